// What an agent and a SOC analyst see when the PLC behind the gateway misbehaves: a PLC double (a
// real TCP server forwarding to the simulator) falls silent, answers garbage, breaks framing, goes
// away and comes back. Also: agents sharing the PLC connection with the same transaction ids, and
// a write's decision record reaching the disk before the PLC sees the write.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Frame } from '../../../protocols/modbus/codec.js';
import type { DecodedRecord } from '../../../src/audit/schema.js';
import { connectModbusAgent, exceptionCodeOf, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { ManualClock } from '../../../src/core/clock.js';
import { PlcDouble, auditRecords, authenticate, rawAgent, spoolRecordsOnDisk, throughDouble, within } from './harness.js';

// Short enough to keep the suite fast, long enough that a forwarded request on a loaded 2-core CI
// machine is not mistaken for a silent PLC.
const TIMEOUT_MS = 300;

async function modbusError(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (err) {
    return exceptionCodeOf(err);
  }
  throw new Error('expected a Modbus exception, the command succeeded');
}

/**
 * The outcomes among `records`, each with the decision it answers: a write's outcome record, or a
 * read's outcome inside its decision record (docs/audit.md, One record per read).
 */
function outcomes(records: DecodedRecord[]): Array<{ status: string; exceptionCode: number; decision: DecodedRecord | undefined }> {
  const bySeq = new Map(records.map((r) => [Number(r.seq), r]));
  return records.flatMap((r) => {
    if (r.decision?.outcome) return [{ status: r.decision.outcome.status ?? '', exceptionCode: r.decision.outcome.exceptionCode ?? 0, decision: r }];
    return r.outcome
      ? [{ status: r.outcome.status ?? '', exceptionCode: r.outcome.exceptionCode ?? 0, decision: bySeq.get(Number(r.outcome.decisionSeq)) }]
      : [];
  });
}

describe('the gateway in front of a misbehaving PLC', () => {
  let dir: string;
  let lab: Lab;
  let plc: PlcDouble;
  let clock: ManualClock;
  let optimizer: ModbusAgent;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-upstream-'));
    clock = new ManualClock(Date.now());
    plc = await PlcDouble.start();
    lab = await startLab({
      stateDir: dir,
      gatewayClock: clock,
      clock: new ManualClock(Date.now()),
      patchConfig: throughDouble(plc, { timeoutMs: TIMEOUT_MS, connections: 1 }),
    });
    await authenticate(lab, 'optimizer', clock.now());
    await authenticate(lab, 'reporter', clock.now());
    optimizer = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('optimizer'));
  });

  afterAll(async () => {
    await optimizer?.close();
    await lab?.close();
    await plc?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    plc.mode = 'forward';
    plc.onRequest = undefined;
  });

  it('answers 0x0B when the PLC accepts a read and never answers, and audits upstream_timeout', async () => {
    const from = lab.gateway.audit.nextSeq;
    plc.mode = 'silent';
    expect(await modbusError(optimizer.client.readInputRegisters(0, 1))).toBe(0x0b);
    const found = outcomes(await auditRecords(lab.gateway.audit, from));
    expect(found).toHaveLength(1);
    expect(found[0].status).toBe('upstream_timeout');
    expect(found[0].decision?.decision?.decision?.reason).toBe('ALLOWED');
    expect(found[0].decision?.decision?.command?.functionCode).toBe(4);
  });

  it('keeps serving once the PLC answers again; the late answer to the timed-out read is not delivered', async () => {
    plc.mode = 'forward';
    lab.sim.write('tank1.level', 12.3);
    const r = await optimizer.client.readInputRegisters(0, 1);
    expect(r.data).toEqual([123]);
  });

  it('answers 0x0B to a PLC answer with the wrong function code, and replaces the PLC connection', async () => {
    const from = lab.gateway.audit.nextSeq;
    const before = plc.accepted;
    plc.mode = 'mismatch';
    expect(await modbusError(optimizer.client.readHoldingRegisters(0, 1))).toBe(0x0b);
    await plc.until(() => plc.accepted === before + 1, 'the gateway to reconnect to the PLC');
    const found = outcomes(await auditRecords(lab.gateway.audit, from));
    expect(found.map((o) => o.status)).toEqual(['upstream_timeout']);
    plc.mode = 'forward';
    await lab.gateway.upstreamsReady();
    lab.sim.write('tank1.setpoint', 44.4);
    expect((await optimizer.client.readHoldingRegisters(0, 1)).data).toEqual([444]);
  });

  it('answers 0x0B when the PLC breaks MBAP framing, and replaces the PLC connection', async () => {
    const before = plc.accepted;
    plc.mode = 'corrupt';
    expect(await modbusError(optimizer.client.readCoils(0, 2))).toBe(0x0b);
    await plc.until(() => plc.accepted === before + 1, 'the gateway to reconnect to the PLC');
    plc.mode = 'forward';
    await lab.gateway.upstreamsReady();
    expect((await optimizer.client.readCoils(0, 2)).data.slice(0, 2)).toHaveLength(2);
  });

  it('gives two agents using the same transaction ids at the same time their own answers', async () => {
    lab.sim.write('tank1.setpoint', 55.5); // holding 0 = 555
    lab.sim.write('pump1.speed', 1234); // holding 1 = 1234
    const a = await rawAgent(lab.gateway.modbus.port, await lab.credentials('optimizer'));
    const b = await rawAgent(lab.gateway.modbus.port, await lab.credentials('reporter'));
    const seen: Frame[] = [];
    plc.onRequest = (f) => seen.push(f);
    const tids = [1, 2, 3, 4, 5, 6, 7, 8];
    const read = (address: number) => [0x03, 0x00, address, 0x00, 0x01];
    // a asks register 0 under each tid, b asks register 1 under the same tids, interleaved.
    for (const t of tids) {
      a.send(t, 1, read(0));
      b.send(t, 1, read(1));
    }
    const [fromA, fromB] = await within(Promise.all([a.receive(tids.length), b.receive(tids.length)]), 5000, 'both agents’ answers');
    a.socket.destroy();
    b.socket.destroy();
    expect(fromA.map((f) => f.transactionId)).toEqual(tids);
    expect(fromB.map((f) => f.transactionId)).toEqual(tids);
    expect(fromA.map((f) => f.pdu.readUInt16BE(2))).toEqual(tids.map(() => 555));
    expect(fromB.map((f) => f.pdu.readUInt16BE(2))).toEqual(tids.map(() => 1234));
    // Toward the PLC, all 16 requests shared one connection under 16 distinct transaction ids.
    expect(seen).toHaveLength(16);
    expect(new Set(seen.map((f) => f.transactionId)).size).toBe(16);
  });

  it('has the write’s decision record fsynced in the spool before the PLC receives the write', async () => {
    const spoolDir = path.join(lab.stateDir, 'spool');
    const agentTid = 0x5a17;
    let atPlc: { onDisk: DecodedRecord | undefined; durableSeq: number; setpoint: number } | undefined;
    plc.onRequest = (f) => {
      if (f.functionCode !== 6) return;
      // The moment the PLC holds the write and has not applied it: what is on disk right now?
      const onDisk = spoolRecordsOnDisk(spoolDir).find((r) => r.decision?.command?.transactionId === agentTid && r.decision.command.functionCode === 6);
      atPlc = { onDisk, durableSeq: lab.gateway.audit.durableSeq, setpoint: lab.sim.read('tank1.setpoint') };
    };
    const agent = await rawAgent(lab.gateway.modbus.port, await lab.credentials('optimizer'));
    agent.send(agentTid, 1, [0x06, 0x00, 0x00, 0x02, 0x61]); // setpoint raw 609 = 60.9 %
    const [answer] = await within(agent.receive(1), 5000, 'the write to be answered');
    agent.socket.destroy();
    expect([...answer.pdu]).toEqual([0x06, 0x00, 0x00, 0x02, 0x61]);
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(60.9, 5);
    expect(atPlc).toBeDefined();
    expect(atPlc?.setpoint).not.toBeCloseTo(60.9, 5);
    const record = atPlc?.onDisk;
    expect(record?.decision?.decision?.reason).toBe('ALLOWED');
    expect(record?.decision?.decision?.durable).toBe(true);
    expect(record?.decision?.command?.rawValues).toEqual([609]);
    // durableSeq only moves after fsync returned: the record was below it when the PLC saw the write.
    expect(Number(record?.seq)).toBeLessThan(atPlc?.durableSeq ?? -1);
  });

  it('answers 0x0A while the PLC is unreachable, audits upstream_unavailable, and recovers when it returns', async () => {
    const port = plc.port;
    const target = plc.target;
    await plc.close();
    const from = lab.gateway.audit.nextSeq;
    expect(await modbusError(optimizer.client.readInputRegisters(0, 1))).toBe(0x0a);
    expect(await modbusError(optimizer.client.writeRegister(0, 500))).toBe(0x0a);
    const records = await auditRecords(lab.gateway.audit, from);
    expect(outcomes(records).map((o) => o.status)).toEqual(['upstream_unavailable', 'upstream_unavailable']);
    // The refused write was still decided (and allowed) and durably audited before being refused upstream.
    expect(outcomes(records)[1].decision?.decision?.command?.functionCode).toBe(6);
    plc = await PlcDouble.start(target, port);
    await within(lab.gateway.upstreamsReady(), 10_000, 'the gateway to reconnect');
    lab.sim.write('tank1.level', 33.3);
    expect((await optimizer.client.readInputRegisters(0, 1)).data).toEqual([333]);
  });
});
