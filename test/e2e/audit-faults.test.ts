// Audit under faults, with a real `plantgate serve` process, real files and real sockets:
// kill -9 under a write load, the collector down under load, the spool full.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LAB_GATEWAY_ID } from '../../src/cli/demo/lab.js';
import { allowedWriteValues, auditRig, servedWrites, writeLoad, type AuditRig } from './audit-harness.js';
import { assertBuilt, run } from './cli.js';

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
    for (let i = 0; ; i++) {
      const text = await readFile(ndjson, 'utf8');
      const seqs = text.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
      if (seqs[seqs.length - 1] >= lastSeq) {
        expect(seqs).toEqual([...Array(seqs.length).keys()]);
        break;
      }
      if (i > 200) throw new Error(`collector stopped at ${seqs[seqs.length - 1]}, spool ends at ${lastSeq}`);
      await new Promise<void>((r) => rig!.collector!.once('record', () => r()));
    }
    await last.stop();
    expect(rig.collector!.stats().alerts).toEqual({});
    expect(rig.collector!.stats().cosignatures + collector.stats().cosignatures).toBeGreaterThan(0);
    // The gateway kept the witness's cosignatures next to its checkpoints.
    const cpDir = path.join(rig.spoolDir, 'checkpoints');
    const notes = await Promise.all((await readdir(cpDir)).map((n) => readFile(path.join(cpDir, n), 'utf8')));
    expect(notes.some((n) => n.includes('— soc.example/witness '))).toBe(true);
  });

  it('with the spool full, denies writes with AUDIT_UNAVAILABLE and serves reads, then recovers once the collector acknowledges', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'plantgate-full-'));
    // 160 KiB: 20 KiB segments; the headroom (64 KiB) leaves room for reads and their records.
    rig = await auditRig(dir, { maxBytes: 160 * 1024 });
    const gw = await rig.startGateway(); // no collector: nothing is acknowledged, nothing deleted
    const agent = await rig.agent();
    let v = 200;
    let denied: number | 'ok' = 'ok';
    for (let i = 0; i < 5000 && denied === 'ok'; i++) denied = await modbusError(agent.client.writeRegister(0, 200 + (v++ % 600)));
    expect(denied).toBe(0x01);
    const before = servedWrites(rig.sim).length;
    // Reads go on while writes are refused.
    const read = await agent.client.readHoldingRegisters(0, 1);
    expect(read.data).toHaveLength(1);
    expect(await modbusError(agent.client.writeRegister(0, 500))).toBe(0x01);
    expect(servedWrites(rig.sim).length).toBe(before);

    await rig.startCollector();
    let recovered = false;
    for (let i = 0; i < 200 && !recovered; i++) {
      recovered = (await modbusError(agent.client.writeRegister(0, 444))) === 'ok';
      if (!recovered) await new Promise<void>((r) => rig!.collector!.once('record', () => r()));
    }
    expect(recovered).toBe(true);
    expect(servedWrites(rig.sim)).toContain(444);
    await agent.close();
    await gw.stop();

    // The refusals are on record: in the collector's output once acknowledged (their segments may
    // already be deleted from the spool), or still in the spool.
    const records = await rig.spoolRecords();
    const reasons = records.flatMap((r) => (r.decision?.decision ? [r.decision.decision.reason] : []));
    const shipped = await readFile(path.join(rig.collectorDir, `${LAB_GATEWAY_ID}.ndjson`), 'utf8');
    const shippedReasons = shipped.trim().split('\n').flatMap((l) => {
      const d = (JSON.parse(l) as { decision?: { decision?: { reason?: string } } }).decision?.decision;
      return d?.reason ? [d.reason] : [];
    });
    expect([...reasons, ...shippedReasons]).toContain('AUDIT_UNAVAILABLE');
    // Nothing corrupted: acknowledged segments were deleted, the rest verifies against tree.hashes.
    const verify = await run(['audit', 'verify', rig.spoolDir, '--key', rig.files.auditVerifierKey]);
    expect(verify.stdout).toMatch(/^OK spool/m);
    expect(verify.code).toBe(0);
    expect(rig.collector!.stats().alerts).toEqual({});
  });
});
