// Recovery never hides loss (docs/audit.md, Recovery), with a real `plantgate serve` process, real
// spool files and a real collector: damage that is not a torn tail stops the gateway with a message
// naming it and the way out; `plantgate audit recover --accept-loss` keeps every surviving record
// and every seq, and the SOC gets the loss as alerts instead of a quietly shorter log.
import { cp, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readSpool } from '../../src/audit/offline.js';
import { decodeRecord, type DecodedRecord } from '../../src/audit/schema.js';
import { FRAME_HEADER_BYTES } from '../../src/audit/spool.js';
import { assertNoSilentLoss, auditRig, collectedThrough, servedWrites, socAlerts, socLines, writeLoad, writeSeqs, type AuditRig } from './audit-harness.js';
import { assertBuilt, run } from './cli.js';

let dir: string;
let rig: AuditRig | undefined;

beforeAll(() => assertBuilt());
afterEach(async () => {
  await rig?.close();
  rig = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** `n` allowed writes of distinct setpoints from `first` on, one at a time. */
async function writes(r: AuditRig, first: number, n: number): Promise<void> {
  const agent = await r.agent();
  try {
    for (let v = first; v < first + n; v++) await agent.client.writeRegister(0, v);
  } finally {
    await agent.close();
  }
}

async function segments(spool: string): Promise<string[]> {
  return (await readdir(spool)).filter((n) => n.endsWith('.seg')).sort();
}

/** [start, end) of each frame in a segment. */
function frames(buf: Buffer): [number, number][] {
  const out: [number, number][] = [];
  for (let pos = 0; pos < buf.length; ) {
    const end = pos + FRAME_HEADER_BYTES + buf.readUInt32BE(pos);
    out.push([pos, end]);
    pos = end;
  }
  return out;
}

async function records(spool: string): Promise<DecodedRecord[]> {
  return (await readSpool(spool)).records.flatMap((r) => (r.record ? [r.record] : []));
}

/** Starts the gateway expecting it to refuse; returns what it printed. */
async function refusedStart(r: AuditRig): Promise<string> {
  const err = await r.startGateway().then(
    () => undefined,
    (e: unknown) => (e as Error).message,
  );
  expect(err, 'the gateway started on a damaged spool').toBeDefined();
  expect(err).toMatch(/gateway exited \(1\) before it was ready/);
  return err!;
}

/** recover without and with --accept-loss; returns the second run's output. */
async function recover(r: AuditRig): Promise<string> {
  const look = await run(['audit', 'recover', '--config', r.configFile]);
  expect(look.code, look.stderr).toBe(1);
  expect(look.stdout).toMatch(/is damaged beyond a torn tail; nothing was changed/);
  const accept = await run(['audit', 'recover', '--config', r.configFile, '--accept-loss']);
  expect(accept.code, accept.stderr + accept.stdout).toBe(0);
  expect(accept.stdout).toMatch(/^AUDIT_GAP seq \d+: records \d+\.\.\d+ lost/m);
  return accept.stdout;
}

/** Ships everything on the gateway's disk to a fresh collector and returns what the SOC has. */
async function shipAll(r: AuditRig): Promise<{ soc: Record<string, any>[]; alerts: Record<string, any>[] }> {
  const all = await records(r.spoolDir);
  await r.startCollector();
  const gw = await r.startGateway();
  await collectedThrough(r, all[all.length - 1].seq as number);
  await gw.stop();
  // A record's alert is written after the record is stored: closing waits for the alerts file.
  await r.stopCollector();
  return { soc: await socLines(r), alerts: await socAlerts(r) };
}

function expectContiguous(soc: Record<string, any>[]): void {
  expect(soc.map((l) => l.seq)).toEqual([...Array(soc.length).keys()]);
}

describe('audit recovery (real gateway process)', () => {
  it('a byte flipped mid-segment: the gateway refuses to start, recover keeps the 70-odd records after it, and the SOC is alerted to the one lost', { timeout: 120_000 }, async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'plantgate-flip-'));
    rig = await auditRig(dir); // no collector yet: nothing is shipped or deleted
    const gw = await rig.startGateway();
    await writes(rig, 200, 60);
    await gw.stop();
    const before = await records(rig.spoolDir);
    const truth = writeSeqs(before);
    const [seg] = (await segments(rig.spoolDir)).slice(-1);
    const file = path.join(rig.spoolDir, seg);
    const bytes = await readFile(file);
    const f = frames(bytes);
    const victim = Math.floor(f.length / 2);
    bytes[f[victim][1] - 3] ^= 0x40; // inside a record in the middle of the newest segment
    await writeFile(file, bytes);
    const lostSeq = (before.find((r) => r.seq === Number(seg.slice(0, 16)) + victim)!.seq) as number;

    const refused = await refusedStart(rig);
    expect(refused).toMatch(new RegExp(`${seg}@${f[victim][0]}, followed by valid records from seq ${lostSeq + 1}`));
    expect(refused).toContain(`plantgate audit recover --config ${rig.configFile} --accept-loss`);
    expect((await stat(file)).size).toBe(bytes.length); // nothing was cut

    const out = await recover(rig);
    expect(out).toMatch(new RegExp(`records ${lostSeq}\\.\\.${lostSeq} lost`));
    const { soc, alerts } = await shipAll(rig);
    expectContiguous(soc);
    // Every record after the flipped one survived under its own seq; none was reused.
    for (const r of before) {
      const line = soc[r.seq as number];
      if (r.seq === lostSeq) expect(line).toMatchObject({ lost: true });
      else expect(line.prevHash).toBe(Buffer.from(r.prevHash).toString('hex'));
    }
    expect(alerts.map((a) => a.kind)).toEqual(expect.arrayContaining(['records_lost', 'audit_gap']));
    expect(alerts.find((a) => a.kind === 'audit_gap')).toMatchObject({ first: lostSeq, last: lostSeq });
    const { inSoc } = assertNoSilentLoss(servedWrites(rig.sim), truth, soc, alerts);
    expect(inSoc).toBeGreaterThanOrEqual(59);
    const verify = await run(['audit', 'verify', rig.spoolDir, '--key', rig.files.auditVerifierKey]);
    expect(verify.code, verify.stdout).toBe(0);
  });

  it('an empty segment: the gateway refuses to start instead of losing its records without a word, and the SOC gets the gap', { timeout: 120_000 }, async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'plantgate-empty-'));
    rig = await auditRig(dir);
    const gw = await rig.startGateway();
    await writes(rig, 200, 40);
    await gw.stop();
    expect(await gw.exited).toEqual({ code: 0, signal: null });
    const before = await records(rig.spoolDir);
    const truth = writeSeqs(before);
    const [seg] = (await segments(rig.spoolDir)).slice(-1);
    const emptied = before.filter((r) => (r.seq as number) >= Number(seg.slice(0, 16)));
    await truncate(path.join(rig.spoolDir, seg), 0);

    const refused = await refusedStart(rig);
    expect(refused).toMatch(/are gone from the spool, yet tree\.hashes holds the leaf hashes of \d+ records/);
    await recover(rig);
    const { soc, alerts } = await shipAll(rig);
    expectContiguous(soc);
    expect(soc.filter((l) => l.lost).map((l) => l.seq)).toEqual(emptied.map((r) => r.seq));
    const gap = alerts.find((a) => a.kind === 'audit_gap');
    expect(gap).toMatchObject({ first: emptied[0].seq, last: emptied[emptied.length - 1].seq });
    assertNoSilentLoss(servedWrites(rig.sim), truth, soc, alerts);
  });

  it('a deleted first segment nobody acknowledged: the gateway refuses to start, and the SOC gets the gap from seq 0', { timeout: 120_000 }, async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'plantgate-first-'));
    // 256 KiB spool: 32 KiB segments, so a few hundred records span several.
    rig = await auditRig(dir, { maxBytes: 256 * 1024 });
    const gw = await rig.startGateway();
    await writes(rig, 200, 150);
    await gw.stop();
    const segs = await segments(rig.spoolDir);
    expect(segs.length).toBeGreaterThan(1);
    const before = await records(rig.spoolDir);
    const truth = writeSeqs(before);
    const keep = path.join(dir, 'first.seg');
    await cp(path.join(rig.spoolDir, segs[0]), keep);
    await rm(path.join(rig.spoolDir, segs[0]));

    const refused = await refusedStart(rig);
    expect(refused).toMatch(new RegExp(`first segment ${segs[1]} starts at seq ${Number(segs[1].slice(0, 16))}, but the collector acknowledged only up to seq -1`));
    await recover(rig);
    const { soc, alerts } = await shipAll(rig);
    expectContiguous(soc);
    expect(alerts.find((a) => a.kind === 'audit_gap')).toMatchObject({ first: 0, last: Number(segs[1].slice(0, 16)) - 1 });
    const { inGap } = assertNoSilentLoss(servedWrites(rig.sim), truth, soc, alerts);
    expect(inGap).toBeGreaterThan(0);
  });

  it("the invariant across crashes and corruption: every write the PLC executed is in the SOC's record or inside an alerted AUDIT_GAP", { timeout: 240_000 }, async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'plantgate-invariant-'));
    rig = await auditRig(dir);
    await rig.startCollector();
    let gw = await rig.startGateway();
    /** kill -9 of the gateway while three agents write, then what its disk says was decided. */
    const crashUnderLoad = async (first: number, answered: number): Promise<void> => {
      const agents = await Promise.all([rig!.agent(), rig!.agent(), rig!.agent()]);
      const load = writeLoad(agents, first);
      await load.reached(answered);
      await gw.kill9();
      await load.stop();
      for (const a of agents) await a.close();
      writeSeqs(await records(rig!.spoolDir), truth);
    };
    const truth = new Map<number, number>();

    // 1. A crash while shipping to the SOC.
    await crashUnderLoad(200, 60);
    // 2. Restarted (torn tail cut, crash record); the collector goes away and writes pile up unshipped.
    gw = await rig.startGateway();
    await rig.stopCollector();
    await writes(rig, 400, 60);
    // 3. A second crash, with the SOC still away.
    await crashUnderLoad(600, 40);
    // 4. A byte flipped among records the SOC never got: in the decision of the newest write the PLC
    //    executed that is followed by valid frames (so it is corruption, not a torn tail). Chosen by
    //    content, not position: under load the newest segment may hold no executed write at all.
    const served = new Set(servedWrites(rig.sim));
    const executedWrite = (payload: Buffer): boolean => {
      const d = decodeRecord(payload).decision;
      return d?.decision?.effect === 1 && d.command?.operation === 'write' && ((d.command.rawValues ?? []) as number[]).some((v) => served.has(v));
    };
    let flipped = false;
    for (const seg of (await segments(rig.spoolDir)).reverse()) {
      const file = path.join(rig.spoolDir, seg);
      const bytes = await readFile(file);
      const whole = frames(bytes).filter(([, end]) => end <= bytes.length);
      const target = whole.slice(0, -1).reverse().find(([start, end]) => executedWrite(bytes.subarray(start + FRAME_HEADER_BYTES, end)));
      if (!target) continue;
      bytes[target[1] - 3] ^= 0x40;
      await writeFile(file, bytes);
      flipped = true;
      break;
    }
    expect(flipped, 'no executed write followed by valid frames in the spool').toBe(true);
    await refusedStart(rig);
    await recover(rig);
    // 5. Everything left goes to the SOC.
    const { soc, alerts } = await shipAll(rig);
    expectContiguous(soc);
    const { inSoc, inGap } = assertNoSilentLoss(servedWrites(rig.sim), truth, soc, alerts);
    expect(inSoc).toBeGreaterThan(100);
    expect(inGap).toBeGreaterThan(0);
    expect(alerts.map((a) => a.kind)).toEqual(expect.arrayContaining(['unclean_stop', 'records_lost', 'audit_gap']));
  });
});

