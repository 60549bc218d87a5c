// Audit under faults, with a real `plantgate serve` process, real files and real sockets:
// kill -9 under a write load, the collector down under load, the spool full.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LAB_GATEWAY_ID } from '../../src/cli/demo/lab.js';
import { allowedWriteValues, auditRig, collectedThrough, servedWrites, socLines, writeLoad, type AuditRig } from './audit-harness.js';
import { assertBuilt, run, waitReady } from './cli.js';

let dir: string;
let rig: AuditRig | undefined;

beforeAll(() => assertBuilt());
afterEach(async () => {
  await rig?.close();
  rig = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function modbusError(p: Promise<unknown>): Promise<number | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    const code = (err as { modbusCode?: number }).modbusCode;
    if (code === undefined) throw err;
    return code;
  }
}

describe('audit faults (real gateway process)', () => {
  it('after kill -9 under a write load, every write the PLC received has its durable decision record and the log verifies', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'plantgate-kill9-'));
    rig = await auditRig(dir);
    await rig.startCollector();
    const gw = await rig.startGateway();
    const agents = await Promise.all([rig.agent(), rig.agent(), rig.agent()]);
    const load = writeLoad(agents, 200);
    await load.reached(150);
    await gw.kill9(); // mid-load: commands in flight on three connections
    await load.stop();
    for (const a of agents) await a.close();

    const again = await rig.startGateway(); // recovery: torn tail cut, tree and chain continue
    await again.stop();

    const served = servedWrites(rig.sim);
    const audited = new Set(allowedWriteValues(await rig.spoolRecords()));
    expect(served.length).toBeGreaterThanOrEqual(load.confirmed.length);
    expect(load.confirmed.length).toBeGreaterThan(100);
    for (const v of served) expect(audited.has(v), `write of ${v} reached the PLC without a durable decision record`).toBe(true);
    for (const v of load.confirmed) expect(served).toContain(v);

    const verify = await run(['audit', 'verify', rig.spoolDir, '--key', rig.files.auditVerifierKey]);
    expect(verify.stdout).toMatch(/^OK spool/m);
    expect(verify.code).toBe(0);
  });

  it('with the collector down under load and then back, every record arrives exactly once, in order, and its checkpoints are witnessed', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'plantgate-coldown-'));
    rig = await auditRig(dir);
    const collector = await rig.startCollector();
    const gw = await rig.startGateway();
    const agents = await Promise.all([rig.agent(), rig.agent()]);
    const load = writeLoad(agents, 200);
    await load.reached(40);
    await rig.stopCollector();
    await load.reached(160);
    await rig.startCollector();
    await load.reached(220);
    await load.stop();
    for (const a of agents) await a.close();
    await gw.stop(); // flushes, signs a last checkpoint, ships what it can before the socket closes

    // Whatever the shipper had not delivered is still in the spool; a second run delivers it.
    const last = await rig.startGateway();
    const records = await rig.spoolRecords();
    const lastSeq = records[records.length - 1].seq as number;
    const ndjson = path.join(rig.collectorDir, `${LAB_GATEWAY_ID}.ndjson`);
    await collectedThrough(rig, lastSeq);
    const seqs = (await readFile(ndjson, 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(seqs).toEqual([...Array(seqs.length).keys()]);
    await last.stop();
    expect(rig.collector!.stats().alerts).toEqual({});
    expect(rig.collector!.stats().cosignatures + collector.stats().cosignatures).toBeGreaterThan(0);
    // The gateway kept the witness's cosignatures next to its checkpoints.
    const cpDir = path.join(rig.spoolDir, 'checkpoints');
    const notes = await Promise.all((await readdir(cpDir)).map((n) => readFile(path.join(cpDir, n), 'utf8')));
    expect(notes.some((n) => n.includes('— soc.example/witness '))).toBe(true);
  });

  it('with the spool full, audits every one of 1,000 denied writes (a record each, or an exact count once there is room), keeps room for reads, reports not ready, and recovers once the collector acknowledges', { timeout: 180_000 }, async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'plantgate-full-'));
    // The smallest spool config check accepts: 32 KiB segments, 16 KiB kept for reads and 16 KiB for denials.
    rig = await auditRig(dir, { maxBytes: 256 * 1024 });
    const gw = await rig.startGateway(); // no collector: nothing is acknowledged, nothing deleted
    const agent = await rig.agent();
    const readyz = async () => (await fetch(`http://127.0.0.1:${rig!.ports.ops}/readyz`)).json() as Promise<{ status: string; checks: Record<string, boolean> }>;
    let denied = 0;
    const write = async (v: number) => {
      const r = await modbusError(agent.client.writeRegister(0, v));
      if (r === 0x01) denied++;
      return r;
    };
    let v = 200;
    let answer: number | 'ok' = 'ok';
    for (let i = 0; i < 5000 && answer === 'ok'; i++) answer = await write(200 + (v++ % 600));
    expect(answer).toBe(0x01);
    expect(await readyz()).toMatchObject({ status: 'not ready', checks: { audit: false } });
    const before = servedWrites(rig.sim).length;
    for (let i = 0; i < 1000; i++) expect(await write(500)).toBe(0x01);
    // Reads go on: 1,000 denials did not take the room kept for them.
    const read = await agent.client.readHoldingRegisters(0, 1);
    expect(read.data).toHaveLength(1);
    expect(servedWrites(rig.sim).length).toBe(before);

    await rig.startCollector();
    // Ready again once acknowledged segments are deleted (a dropped denial ships nothing, so the
    // collector's records are no event to wait on).
    await waitReady(rig.ports.ops);
    expect(await write(444)).toBe('ok');
    expect(servedWrites(rig.sim)).toContain(444);
    await agent.close();
    await gw.stop();
    // What the stop wrote after the shipper closed goes out on the next start.
    const last = (await rig.spoolRecords()).at(-1)!.seq as number;
    const again = await rig.startGateway();
    await collectedThrough(rig, last);
    await again.stop();

    // Every denial is on the SOC's record: as its own record, or counted in a RecordsDroppedEvent.
    const soc = await socLines(rig);
    const recordedDenials = soc.filter((l) => l.decision?.decision?.reason === 'AUDIT_UNAVAILABLE' && l.decision.command?.operation === 'write').length;
    const dropped = soc.filter((l) => l.dropped).reduce((n, l) => n + (l.dropped.denials ?? 0), 0);
    expect(recordedDenials + dropped).toBe(denied);
    expect(denied).toBeGreaterThan(1000);
    expect(dropped).toBeGreaterThan(0); // 1,000 denials do not all fit in 16 KiB
    // Each RecordsDroppedEvent is an alert at the SOC.
    expect(rig.collector!.stats().alerts.records_dropped).toBe(soc.filter((l) => l.dropped).length);
    const verify = await run(['audit', 'verify', rig.spoolDir, '--key', rig.files.auditVerifierKey]);
    expect(verify.stdout).toMatch(/^OK spool/m);
    expect(verify.code).toBe(0);
  });
});
