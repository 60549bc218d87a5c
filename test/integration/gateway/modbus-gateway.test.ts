// The whole path over real sockets: modbus-serial (through mutual TLS) → gateway → simulated PLC,
// with the development PKI, a signed bundle compiled from rules/demo and the SOC collector.
// One lab for the file, but every case stands alone (they pass in any order: vitest
// --sequence.shuffle): each starts with fresh tokens at the lab clock's now.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { connectModbusAgent, exceptionCodeOf, putToken, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { FrameDecoder, encodeFrame, type Frame } from '../../../protocols/modbus/codec.js';
import { auditRecords } from './harness.js';

async function modbusError(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (err) {
    return exceptionCodeOf(err);
  }
  throw new Error('expected a Modbus exception, the command succeeded');
}

/** A raw TLS connection for frames modbus-serial cannot send (pipelining, malformed frames). */
async function rawAgent(lab: Lab, agent: 'optimizer' | 'reporter') {
  const creds = await lab.credentials(agent);
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: lab.gateway.modbus.port, ...creds, servername: 'localhost' }, () => resolve(s));
    s.once('error', reject);
  });
  const frames: Frame[] = [];
  let waiter: (() => void) | undefined;
  const decoder = new FrameDecoder(
    (f) => {
      frames.push({ ...f, pdu: Buffer.from(f.pdu) });
      waiter?.();
    },
    () => undefined,
  );
  socket.on('data', (c: Buffer) => decoder.push(c));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    closed,
    async receive(n: number): Promise<Frame[]> {
      while (frames.length < n) await new Promise<void>((r) => (waiter = r));
      return frames.splice(0, n);
    },
  };
}

describe('Modbus/TCP Security through the gateway to the simulated plant', () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let optimizer: ModbusAgent;
  let reporter: ModbusAgent;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-gw-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock });
    const { host, port } = lab.gateway.modbus;
    optimizer = await connectModbusAgent(host, port, await lab.credentials('optimizer'));
    reporter = await connectModbusAgent(host, port, await lab.credentials('reporter'));
  });

  /** The reason of every decision record the gateway wrote from `from` on. */
  async function decisionReasons(from: number): Promise<string[]> {
    return (await auditRecords(lab.gateway.audit, from)).flatMap((r) => (r.decision?.decision?.reason ? [String(r.decision.decision.reason)] : []));
  }

  /**
   * A live token for both agents before each case: the same one again while it is fresh (an
   * identity may register only so many distinct tokens), a new one once a case let time run out.
   */
  const tokens = new Map<string, { jwt: string; mintedAt: number }>();
  beforeEach(async () => {
    const api = lab.gateway.agentApi;
    for (const agent of ['optimizer', 'reporter'] as const) {
      let t = tokens.get(agent);
      if (t === undefined || clock.now() - t.mintedAt > 60_000) {
        t = { jwt: await lab.token(agent, { now: clock.now() }), mintedAt: clock.now() };
        tokens.set(agent, t);
      }
      expect((await putToken(api.host, api.port, await lab.credentials(agent), t.jwt)).status).toBe(200);
    }
  });

  afterAll(async () => {
    await optimizer?.close();
    await reporter?.close();
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('denies every command of an agent that has not put a token, with NO_TOKEN and exception 0x01', async () => {
    // The planner never puts a token in this file.
    const planner = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('planner'));
    try {
      const from = lab.gateway.audit.nextSeq;
      expect(await modbusError(planner.client.readInputRegisters(0, 1))).toBe(0x01);
      expect(await decisionReasons(from)).toEqual(['NO_TOKEN']);
    } finally {
      await planner.close();
    }
  });

  it('accepts a token bound to the agent certificate on the agent API', async () => {
    const api = lab.gateway.agentApi;
    const answer = await putToken(api.host, api.port, await lab.credentials('optimizer'), await lab.token('optimizer', { now: clock.now() }));
    expect(answer.status).toBe(200);
    expect(answer.body.status).toBe('accepted');
    const reporterAnswer = await putToken(api.host, api.port, await lab.credentials('reporter'), await lab.token('reporter', { now: clock.now() }));
    expect(reporterAnswer.status).toBe(200);
  });

  it('refuses a token minted for another workload with TOKEN_INVALID', async () => {
    const api = lab.gateway.agentApi;
    const answer = await putToken(api.host, api.port, await lab.credentials('reporter'), await lab.token('optimizer', { now: clock.now() }));
    expect(answer.status).toBe(401);
    expect(answer.body.reason).toBe('TOKEN_INVALID');
  });

  it('forwards an allowed read and returns what the PLC holds', async () => {
    const r = await optimizer.client.readInputRegisters(0, 1);
    expect(r.data[0] / 10).toBeCloseTo(lab.sim.read('tank1.level'), 0);
  });

  it('forwards an allowed write inside the bounds: the PLC setpoint changes', async () => {
    const next = lab.sim.read('tank1.setpoint') === 60 ? 550 : 600;
    await optimizer.client.writeRegister(0, next);
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(next / 10, 5);
  });

  it('denies a setpoint outside the bounds with exception 0x03 and leaves the PLC untouched', async () => {
    const before = lab.sim.read('tank1.setpoint');
    expect(await modbusError(optimizer.client.writeRegister(0, 950))).toBe(0x03);
    expect(lab.sim.read('tank1.setpoint')).toBe(before);
  });

  it('denies a write to a register no rule names with exception 0x02', async () => {
    expect(await modbusError(optimizer.client.writeRegister(10, 1))).toBe(0x02);
  });

  it('denies a read-only agent starting the pump with exception 0x02; the pump stays off', async () => {
    expect(await modbusError(reporter.client.writeCoil(0, true))).toBe(0x02);
    expect(lab.sim.read('pump1.run')).toBe(0);
  });

  it('answers pipelined requests in order with the agent’s own transaction ids', async () => {
    const raw = await rawAgent(lab, 'optimizer');
    const tids = [0x1111, 0x2222, 0x3333, 0x4444];
    const read = Buffer.from([0x04, 0x00, 0x00, 0x00, 0x01]);
    raw.socket.write(Buffer.concat(tids.map((t) => encodeFrame(t, 1, read))));
    const answers = await raw.receive(tids.length);
    expect(answers.map((f) => f.transactionId)).toEqual(tids);
    expect(answers.every((f) => f.pdu[0] === 0x04)).toBe(true);
    raw.socket.destroy();
  });

  it('answers an unknown function code with exception 0x01 and keeps the connection', async () => {
    const raw = await rawAgent(lab, 'optimizer');
    raw.socket.write(encodeFrame(7, 1, Buffer.from([0x41, 0x00])));
    const [answer] = await raw.receive(1);
    expect([...answer.pdu]).toEqual([0xc1, 0x01]);
    raw.socket.write(encodeFrame(8, 1, Buffer.from([0x04, 0x00, 0x00, 0x00, 0x01])));
    const [next] = await raw.receive(1);
    expect(next.pdu[0]).toBe(0x04);
    raw.socket.destroy();
  });

  it('closes a connection that sends a malformed frame; other agents keep working', async () => {
    const raw = await rawAgent(lab, 'optimizer');
    // protocol id 1 is not Modbus
    raw.socket.write(Buffer.from([0x00, 0x01, 0x00, 0x01, 0x00, 0x06, 0x01, 0x03, 0x00, 0x00, 0x00, 0x01]));
    await raw.closed;
    const r = await optimizer.client.readInputRegisters(0, 1);
    expect(r.data.length).toBe(1);
  });

  it('denies commands once the token has expired, with exception 0x01', async () => {
    clock.advance(301_000);
    const from = lab.gateway.audit.nextSeq;
    expect(await modbusError(optimizer.client.readInputRegisters(0, 1))).toBe(0x01);
    expect(await decisionReasons(from)).toEqual(['TOKEN_EXPIRED']);
  });

  it('streams every record to the collector, in order, with an unbroken chain', async () => {
    // Its own denials, whatever ran before: out of bounds, no rule, an unknown function code and a
    // malformed frame (a violation); and an allowed read.
    await optimizer.client.readInputRegisters(0, 1);
    await modbusError(optimizer.client.writeRegister(0, 950));
    await modbusError(optimizer.client.writeRegister(10, 1));
    const raw = await rawAgent(lab, 'optimizer');
    raw.socket.write(encodeFrame(7, 1, Buffer.from([0x41, 0x00])));
    await raw.receive(1);
    raw.socket.write(Buffer.from([0x00, 0x01, 0x00, 0x01, 0x00, 0x06, 0x01, 0x03, 0x00, 0x00, 0x00, 0x01]));
    await raw.closed;
    const shipped = await lab.waitShipped();
    const lines = (await readFile(shipped.file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.length).toBe(shipped.records);
    expect(lines.map((l) => Number(l.seq))).toEqual(lines.map((_, i) => i));
    const reasons = lines.flatMap((l) => {
      const d = l.decision as { decision?: { reason?: string } } | undefined;
      return d?.decision?.reason ? [d.decision.reason] : [];
    });
    expect(reasons).toEqual(expect.arrayContaining(['ALLOWED', 'VALUE_OUT_OF_BOUNDS', 'NO_MATCHING_RULE', 'UNSUPPORTED_FUNCTION']));
    expect(lines.some((l) => l.violation !== undefined)).toBe(true);
  });
});
