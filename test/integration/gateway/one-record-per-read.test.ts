// One record per read, two per write (docs/audit.md): through the real gateway, a Modbus read's
// decision and the PLC's answer are one record; a write keeps its durable decision before it is
// forwarded and its outcome after; a denial is its decision alone. The SOC's OCSF line of a read
// says how the PLC answered.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectModbusAgent, exceptionCodeOf, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { LAB_GATEWAY_ID, startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { auditRecords, authenticate } from './harness.js';

/** The command records (decisions and outcomes) since `from`, as kind and what they say. */
async function commandRecords(lab: Lab, from: number) {
  return (await auditRecords(lab.gateway.audit, from)).filter((r) => r.decision || r.outcome);
}

describe('one record per read, two per write', () => {
  let dir: string;
  let lab: Lab;
  let agent: ModbusAgent;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-one-record-'));
    lab = await startLab({ stateDir: dir });
    await authenticate(lab, 'optimizer');
    agent = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('optimizer'));
  }, 60_000);

  afterAll(async () => {
    await agent?.close();
    await lab?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('records an allowed read once, its decision carrying the PLC answer', async () => {
    const from = lab.gateway.audit.nextSeq;
    await agent.client.readInputRegisters(0, 1);
    const records = await commandRecords(lab, from);
    expect(records).toHaveLength(1);
    const d = records[0]!.decision!;
    expect(d.decision?.effect).toBe(1); // ALLOW
    expect(d.outcome).toMatchObject({ status: 'ok' });
    expect(Number(d.outcome?.upstreamLatencyUs)).toBeGreaterThan(0);
  });

  it('records an allowed write twice: the durable decision, then its outcome naming it', async () => {
    const from = lab.gateway.audit.nextSeq;
    await agent.client.writeRegister(0, 610);
    const records = await commandRecords(lab, from);
    expect(records.map((r) => (r.decision ? `decision durable=${String(r.decision.decision?.durable)}` : `outcome ${r.outcome?.status}`))).toEqual([
      'decision durable=true',
      'outcome ok',
    ]);
    expect(Number(records[1]!.outcome?.decisionSeq)).toBe(Number(records[0]!.seq));
    expect(records[0]!.decision?.outcome).toBeFalsy();
  });

  it('records a denied read once, with no answer: it never reached the PLC', async () => {
    const from = lab.gateway.audit.nextSeq;
    const code = await agent.client.readHoldingRegisters(9000, 1).then(() => undefined, (err: unknown) => exceptionCodeOf(err));
    expect(code).toBeDefined();
    const records = await commandRecords(lab, from);
    expect(records).toHaveLength(1);
    expect(records[0]!.decision?.decision?.effect).toBe(2); // DENY
    expect(records[0]!.decision?.outcome).toBeFalsy();
  });

  it('gives the SOC one OCSF line for a read, saying how the PLC answered', async () => {
    const from = lab.gateway.audit.nextSeq;
    await agent.client.readInputRegisters(0, 1);
    await lab.waitShipped();
    const lines = (await readFile(path.join(lab.collectorDir, `${LAB_GATEWAY_ID}.ocsf.ndjson`), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    const read = lines.filter((e) => Number(e.unmapped?.seq) >= from && e.class_uid === 6003);
    expect(read).toHaveLength(1);
    expect(read[0]).toMatchObject({ status: 'Success', unmapped: { outcome_status: 'ok' } });
    expect(read[0]!.message).toMatch(/^allowed: read .* answered ok$/);
  });
});
