// The gateway in front of a Modbus server it was not built with (reference-plc-server.ts: the
// 100/100/32/32 reference PLC with a device identity, written from the specification): a
// pymodbus-style check set (FC 1-6, 15, 16, 22, 23, 43/14, exceptions 1/2/3) answers through the
// gateway exactly as the PLC answers it directly, byte for byte, one request at a time, pipelined
// in one segment, and split into one-byte segments. The policy is the example bundle
// rules/examples/reference-plc (range-only rules over fixtures/plants/reference-plc.yaml), and
// what the policy or the specification refuses never reaches the PLC.
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { loadPlant } from '../../../src/assets/plant.js';
import { putToken } from '../../../src/cli/demo/agent.js';
import { PACKAGE_ROOT, startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { auditRecords, rawAgent, within } from './harness.js';
import { REFERENCE_IDENTITY, REFERENCE_MAP, ReferencePlc } from './reference-plc-server.js';

const PLANT = 'fixtures/plants/reference-plc.yaml';

interface Check {
  name: string;
  pdu: string;
  /** Expected from the PLC itself: a response function code, or an exception code as 'xNN'. */
  expect: number | string;
  /** The gateway's reason when it answers itself instead of forwarding. */
  refusedWith?: string;
}

const hex = (...bytes: number[]): string => Buffer.from(bytes).toString('hex');
const ascii = (s: string): string => Buffer.from(s, 'latin1').toString('hex');

/** In order: the writes come first, so later reads show them. */
const CHECKS: Check[] = [
  { name: 'FC5 write coil 7 on', pdu: hex(5, 0, 7, 0xff, 0), expect: 5 },
  { name: 'FC6 write holding 5', pdu: hex(6, 0, 5, 0x12, 0x34), expect: 6 },
  { name: 'FC15 write coils 20..29', pdu: hex(15, 0, 20, 0, 10, 2, 0b1010_0101, 0b11), expect: 15 },
  { name: 'FC16 write holding 10..12', pdu: hex(16, 0, 10, 0, 3, 6, 0, 1, 0, 2, 0xff, 0xff), expect: 16 },
  { name: 'FC22 mask write holding 5', pdu: hex(22, 0, 5, 0xf0, 0xf2, 0x00, 0x25), expect: 22 },
  { name: 'FC23 read 10..12, write 30..31', pdu: hex(23, 0, 10, 0, 3, 0, 30, 0, 2, 4, 0xab, 0xcd, 0, 9), expect: 23 },
  { name: 'FC1 read coils 0..29', pdu: hex(1, 0, 0, 0, 30), expect: 1 },
  { name: 'FC1 read all 100 coils', pdu: hex(1, 0, 0, 0, 100), expect: 1 },
  { name: 'FC2 read discretes 0..99', pdu: hex(2, 0, 0, 0, 100), expect: 2 },
  { name: 'FC3 read holding 0..31', pdu: hex(3, 0, 0, 0, 32), expect: 3 },
  { name: 'FC4 read input 0..31', pdu: hex(4, 0, 0, 0, 32), expect: 4 },
  { name: 'FC43/14 basic stream', pdu: hex(43, 14, 1, 0), expect: 43 },
  { name: 'FC43/14 regular stream', pdu: hex(43, 14, 2, 0), expect: 43 },
  { name: 'FC43/14 product name alone', pdu: hex(43, 14, 4, 4), expect: 43 },
  { name: 'FC43/14 an object the PLC lacks', pdu: hex(43, 14, 4, 5), expect: 'x02' },
  { name: 'exception 1: unknown function code 65', pdu: hex(65, 0, 0), expect: 'x01', refusedWith: 'UNSUPPORTED_FUNCTION' },
  { name: 'exception 2: holding 31..32 runs past the map', pdu: hex(3, 0, 31, 0, 2), expect: 'x02', refusedWith: 'NO_MATCHING_RULE' },
  { name: 'exception 2: coil 100 does not exist', pdu: hex(5, 0, 100, 0xff, 0), expect: 'x02', refusedWith: 'NO_MATCHING_RULE' },
  { name: 'exception 3: FC3 quantity 0', pdu: hex(3, 0, 0, 0, 0), expect: 'x03', refusedWith: 'PROTOCOL_VIOLATION' },
  { name: 'exception 3: FC3 quantity 126', pdu: hex(3, 0, 0, 0, 126), expect: 'x03', refusedWith: 'PROTOCOL_VIOLATION' },
  { name: 'exception 3: FC5 value 0x1234', pdu: hex(5, 0, 1, 0x12, 0x34), expect: 'x03', refusedWith: 'PROTOCOL_VIOLATION' },
  { name: 'exception 3: FC16 byte count 5 for 3 registers', pdu: hex(16, 0, 0, 0, 3, 5, 0, 0, 0, 0, 0), expect: 'x03', refusedWith: 'PROTOCOL_VIOLATION' },
];

type Answer = [tid: number, unit: number, pdu: string];

function mbap(tid: number, unit: number, pdu: string): Buffer {
  const body = Buffer.from(pdu, 'hex');
  const head = Buffer.alloc(7);
  head.writeUInt16BE(tid, 0);
  head.writeUInt16BE(body.length + 1, 4);
  head[6] = unit;
  return Buffer.concat([head, body]);
}

/** The check set as one byte stream, transaction ids 0x100 + index. */
const STREAM = Buffer.concat(CHECKS.map((c, i) => mbap(0x100 + i, 1, c.pdu)));

type Mode = 'one at a time' | 'pipelined' | 'split into 1-byte segments';

/** Runs the check set over a connected socket and collects the answers, split by MBAP length. */
async function runChecks(socket: net.Socket, mode: Mode): Promise<Answer[]> {
  const answers: Answer[] = [];
  let buf = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  socket.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    while (buf.length >= 7 && buf.length >= 6 + buf.readUInt16BE(4)) {
      const len = buf.readUInt16BE(4);
      answers.push([buf.readUInt16BE(0), buf[6]!, buf.subarray(7, 6 + len).toString('hex')]);
      buf = buf.subarray(6 + len);
    }
    wake?.();
  });
  const until = (n: number): Promise<void> =>
    within(
      new Promise<void>((resolve) => {
        const check = (): void => (answers.length >= n ? resolve() : void (wake = check));
        check();
      }),
      20_000,
      `${n} answers (${mode})`,
    );
  if (mode === 'one at a time') {
    for (const [i, c] of CHECKS.entries()) {
      socket.write(mbap(0x100 + i, 1, c.pdu));
      await until(i + 1);
    }
  } else if (mode === 'pipelined') {
    socket.write(STREAM);
  } else {
    for (const byte of STREAM) socket.write(Buffer.from([byte]));
  }
  await until(CHECKS.length);
  return answers;
}

describe('the gateway in front of a third-party Modbus PLC (100/100/32/32 with identity)', () => {
  let dir: string;
  let lab: Lab;
  const plc = new ReferencePlc();
  const gatewayClock = new ManualClock(Date.now());
  /** What the PLC answers when asked directly, per mode (the reference the gateway must match). */
  const direct = new Map<Mode, Answer[]>();

  beforeAll(async () => {
    const port = await plc.listen();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-third-party-'));
    lab = await startLab({
      stateDir: dir,
      gatewayClock,
      plant: PLANT,
      rules: 'rules/examples/reference-plc/bundle.yaml',
      // The bundle's one asset, routed to the PLC written above instead of the simulator.
      patchConfig: (yaml) => yaml.replace(/upstreams:\n[\s\S]*?(?=policy:\n)/, `upstreams:\n  - { asset: ref, host: 127.0.0.1, port: ${port}, connections: 2, timeout_ms: 2000 }\n`),
    });
    const creds = await lab.credentials('optimizer');
    const token = await lab.token('optimizer', { now: gatewayClock.now(), scope: ['read', 'write', 'diagnostic'] });
    const answer = await putToken(lab.gateway.agentApi.host, lab.gateway.agentApi.port, creds, token);
    expect(answer.status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await lab?.close();
    await plc.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => plc.reset());

  it('the map is a plant file of at most 15 lines that describes this PLC', async () => {
    const text = await readFile(path.join(PACKAGE_ROOT, PLANT), 'utf8');
    expect(text.trimEnd().split('\n').length).toBeLessThanOrEqual(15);
    const [ref] = (await loadPlant(path.join(PACKAGE_ROOT, PLANT))).plcs;
    const size = (table: string): number => ref!.registers.filter((r) => r.table === table).reduce((n, r) => n + r.to - r.from + 1, 0);
    expect({ coils: size('coil'), discretes: size('discrete'), holding: size('holding'), input: size('input') }).toEqual(REFERENCE_MAP);
    expect(Object.fromEntries(ref!.identity!.objects.map((o) => [o.id, o.value]))).toEqual(REFERENCE_IDENTITY);
  });

  it('the simulator serving that plant file answers the check set as the PLC does', async () => {
    const socket = net.connect(plc.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const expected = await runChecks(socket, 'pipelined');
    socket.destroy();
    lab.sim.reset();
    const t = lab.sim.runtime.tables[0]!;
    t.discretes.set(plc.discretes); // the inputs the PLC's field wiring gives it
    t.input.set(plc.input);
    const sim = net.connect(lab.sim.port, '127.0.0.1');
    await new Promise((r) => sim.once('connect', r));
    expect(await runChecks(sim, 'pipelined')).toEqual(expected);
    sim.destroy();
  });

  for (const mode of ['one at a time', 'pipelined', 'split into 1-byte segments'] as const) {
    it(`answers the check set exactly as the PLC does directly, ${mode}`, async () => {
      const socket = net.connect(plc.port, '127.0.0.1');
      socket.setNoDelay(true);
      await new Promise((r) => socket.once('connect', r));
      const expected = await runChecks(socket, mode);
      socket.destroy();
      direct.set(mode, expected);
      // The PLC itself answers as the specification says (else comparing with it proves little).
      expect(expected.map(([tid, , pdu], i) => [tid, typeof CHECKS[i]!.expect === 'string' ? `x${pdu.slice(2, 4)}` : parseInt(pdu.slice(0, 2), 16)])).toEqual(
        CHECKS.map((c, i) => [0x100 + i, c.expect]),
      );
      expect(expected[CHECKS.findIndex((c) => c.name === 'FC3 read holding 0..31')]![2]).toBe(
        // holding 5 = (0x1234 & 0xF0F2) | (0x0025 & ~0xF0F2); 10..12 = 1, 2, 0xFFFF; 30..31 from FC23
        `0340${'0000'.repeat(5)}1035${'0000'.repeat(4)}00010002ffff${'0000'.repeat(17)}abcd0009`,
      );
      expect(expected[CHECKS.findIndex((c) => c.name === 'FC43/14 regular stream')]![2]).toBe(
        `2b0e0282000004000d${ascii('Acme Controls')}0106${ascii('RC-100')}0203${ascii('2.1')}040d${ascii('Reference PLC')}`,
      );
      const forwardedDirect = plc.received.length;
      expect(forwardedDirect).toBe(CHECKS.length);

      plc.reset();
      const from = lab.gateway.audit.nextSeq;
      const agent = await rawAgent(lab.gateway.modbus.port, await lab.credentials('optimizer'));
      const through = await runChecks(agent.socket, mode);
      agent.socket.destroy();
      expect(through).toEqual(expected);
      // What the policy or the specification refuses never reaches the PLC; the rest does, unchanged,
      // in the agent's order: reads in a row may reach it in any order (two upstream connections),
      // but never past a write or diagnostic, which runs alone, as the PLC itself executes them.
      const forwarded = CHECKS.filter((c) => c.refusedWith === undefined).map((c) => c.pdu);
      const received = plc.received.map((r) => r.pdu);
      expect([...received].sort()).toEqual([...forwarded].sort());
      const isRead = (pdu: string): boolean => ['01', '02', '03', '04'].includes(pdu.slice(0, 2));
      expect(received.map((pdu, i) => (isRead(pdu) ? 'read' : `${i}:${pdu}`))).toEqual(forwarded.map((pdu, i) => (isRead(pdu) ? 'read' : `${i}:${pdu}`)));
      // One decision record per command, in the agent's order by transaction id (a read is recorded
      // once answered, so records of a pipelined run need not be in that order).
      const decided = (await auditRecords(lab.gateway.audit, from)).filter((r) => r.decision?.decision);
      decided.sort((a, b) => Number(a.decision!.command?.transactionId ?? 0) - Number(b.decision!.command?.transactionId ?? 0));
      expect(decided.map((r) => r.decision!.decision!.reason ?? '')).toEqual(CHECKS.map((c) => c.refusedWith ?? 'ALLOWED'));
    }, 60_000);
  }
});
