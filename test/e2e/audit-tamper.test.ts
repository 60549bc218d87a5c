// Tampering with a gateway's audit on disk, and rewriting its history: `plantgate audit verify`
// names the seq or checkpoint, the gateway refuses to open a spool edited in place, and the
// collector (which witnessed the original) refuses the rewritten one.
import { createHash, generateKeyPairSync } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, CHECKPOINT_DIR, checkpointFileName } from '../../src/audit/log.js';
import { noteSigner, verifierKey } from '../../src/audit/note.js';
import { cosigner, cosignerVerifierKey } from '../../src/audit/checkpoint.js';
import { cutBackTo } from '../integration/audit/spool-cut.js';
import { outcomeRecord } from '../../src/audit/records.js';
import { startShipper, type ShipperAlert } from '../../src/audit/shipper.js';
import { FRAME_HEADER_BYTES } from '../../src/audit/spool.js';
import { startCollector } from '../../src/collector/server.js';
import { ManualClock } from '../../src/core/clock.js';
import { initPki } from '../../src/identity/dev/pki.js';
import { assertBuilt, run } from './cli.js';

const key = generateKeyPairSync('ed25519').privateKey;
const signer = noteSigner('plantgate/gw-1', key);
const vkey = verifierKey('plantgate/gw-1', key);
const SEG = '0000000000000000.seg';
let dir: string;

beforeAll(() => assertBuilt());
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'plantgate-tamper-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A closed spool of `n` outcome records (+ a checkpoint every 8), each status naming its variant. */
async function spool(at: string, n: number, variant = 'ok'): Promise<void> {
  const log = await AuditLog.open({ dir: at, gatewayId: 'gw-1', clock: new ManualClock(), checkpoints: { signer, everyRecords: 8 } });
  for (let i = 0; i < n; i++) log.append(outcomeRecord({ decisionSeq: i, sessionId: variant, status: 'ok' }));
  await log.close();
}

/** [start, end) byte ranges of each frame in a segment. */
function frames(buf: Buffer): [number, number][] {
  const out: [number, number][] = [];
  for (let pos = 0; pos < buf.length; ) {
    const end = pos + FRAME_HEADER_BYTES + buf.readUInt32BE(pos);
    out.push([pos, end]);
    pos = end;
  }
  return out;
}

async function verify(target: string[]): Promise<{ code: number | null; out: string }> {
  const r = await run(['audit', 'verify', ...target, '--key', vkey]);
  return { code: r.code, out: r.stdout + r.stderr };
}

describe('tampering with the audit on disk', () => {
  it('a flipped byte: audit verify names the seq, by CRC or, with the CRC forged, by the tree and the chain', async () => {
    const a = path.join(dir, 'a');
    await spool(a, 30);
    const b = path.join(dir, 'b');
    await cp(a, b, { recursive: true });
    const seg = await readFile(path.join(a, SEG));
    const [s, e] = frames(seg)[12];
    seg[e - 1] ^= 0x01; // the last byte of record 12 (its session id)
    await writeFile(path.join(a, SEG), seg);
    let r = await verify([a]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/FAIL seq 12 \(0000000000000000\.seg@\d+\): record bytes do not match their CRC/);

    // The same flip with the CRC recomputed: the leaf hash differs from tree.hashes and the next record's prev_hash.
    seg.writeUInt32BE(crc32(seg.subarray(s + FRAME_HEADER_BYTES, e)), s + 4);
    await writeFile(path.join(b, SEG), seg);
    r = await verify([b]);
    expect(r.code).toBe(1);
    expect(r.out).not.toMatch(/CRC/);
    expect(r.out).toMatch(/FAIL seq 12 \(tree\.hashes\): record hash differs/);
    expect(r.out).toMatch(/FAIL seq 13 \(spool\): prev_hash does not match/);
    // The gateway will not run on it either: a valid frame out of chain is not a torn tail to cut.
    await expect(AuditLog.open({ dir: b, gatewayId: 'gw-1', clock: new ManualClock() })).rejects.toThrow(/changed on disk/);
  });

  it('a removed and a reordered record: audit verify names where the sequence breaks', async () => {
    const a = path.join(dir, 'a');
    await spool(a, 30);
    const seg = await readFile(path.join(a, SEG));
    const f = frames(seg);
    const removed = Buffer.concat([seg.subarray(0, f[12][0]), seg.subarray(f[12][1])]);
    const reordered = Buffer.concat([seg.subarray(0, f[12][0]), seg.subarray(f[13][0], f[13][1]), seg.subarray(f[12][0], f[12][1]), seg.subarray(f[13][1])]);
    for (const [name, bytes] of [['removed', removed], ['reordered', reordered]] as const) {
      const d = path.join(dir, name);
      await cp(a, d, { recursive: true });
      await writeFile(path.join(d, SEG), bytes);
      const r = await verify([d]);
      expect(r.code, name).toBe(1);
      expect(r.out).toMatch(/FAIL seq 12 \(spool\): record seq 13 found where seq 12 belongs \(removed or reordered\)/);
      await expect(AuditLog.open({ dir: d, gatewayId: 'gw-1', clock: new ManualClock() })).rejects.toThrow(
        name === 'removed' ? /records 12\.\.12 are missing at 0000000000000000\.seg@\d+: the record there is seq 13 \(removed from the file\)/ : /record seq 12 appears again after seq 13/,
      );
    }
  });

  it('a checkpoint re-signed over a rewritten history: audit verify calls it a fork, and the witnessing collector refuses the rewritten log', async () => {
    const pkiDir = path.join(dir, 'pki');
    const pki = await initPki(pkiDir, { agents: [] });
    const [ca, gcert, gkey, ccert, ckey] = await Promise.all([pki.ca.cert, pki.gateway.cert, pki.gateway.key, pki.collector.cert, pki.collector.key].map((f) => readFile(f, 'utf8')));
    const collector = await startCollector({
      host: '127.0.0.1',
      port: 0,
      tls: { ca, cert: ccert, key: ckey },
      outDir: path.join(dir, 'soc'),
      gateways: [{ id: 'gw-1', verifierKey: vkey, identity: pki.gateway.spiffeId }],
    });
    try {
      const ship = async (spoolDir: string): Promise<ShipperAlert | 'acked'> => {
        const log = await AuditLog.open({ dir: spoolDir, gatewayId: 'gw-1', clock: new ManualClock() });
        const s = startShipper({ log, host: '127.0.0.1', port: collector.port, tls: { ca, cert: gcert, key: gkey }, gatewayId: 'gw-1', reconnect: { minMs: 10, maxMs: 50 } });
        const last = log.nextSeq - 1;
        const result = await new Promise<ShipperAlert | 'acked'>((resolve) => {
          s.once('alert', resolve);
          s.on('acked', (seq: number) => seq >= last && resolve('acked'));
        });
        await s.close();
        await log.close();
        return result;
      };
      const original = path.join(dir, 'original');
      await spool(original, 20);
      expect(await ship(original)).toBe('acked');

      // Someone with the gateway's key rewrites history from scratch and signs checkpoints over it.
      const rewritten = path.join(dir, 'rewritten');
      await spool(rewritten, 30, 'rewritten');
      const cpName = checkpointFileName(8);
      const r = await verify([path.join(original, CHECKPOINT_DIR, cpName), path.join(rewritten, CHECKPOINT_DIR, cpName)]);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/FAIL checkpoint 8 \(checkpoints\): two signed checkpoints of the same size with different roots: the log forked/);

      const alert = await ship(rewritten);
      expect(alert).toMatchObject({ kind: 'collector_chain_differs' });
      const soc = (await readFile(path.join(dir, 'soc', 'gw-1.ndjson'), 'utf8')).trim().split('\n');
      expect(soc.map((l) => (JSON.parse(l) as { outcome?: { sessionId?: string } }).outcome?.sessionId).filter(Boolean)).not.toContain('rewritten');
    } finally {
      await collector.close();
    }
  });

  /** Ships the spool to a real collector that witnesses (cosigns) and waits for the last checkpoint's cosignature. */
  async function shipToWitness(spoolDir: string): Promise<{ soc: string; wkey: string; last: number }> {
    const pki = await initPki(path.join(dir, 'pki'), { agents: [] });
    const [ca, gcert, gkey, ccert, ckey] = await Promise.all([pki.ca.cert, pki.gateway.cert, pki.gateway.key, pki.collector.cert, pki.collector.key].map((f) => readFile(f, 'utf8')));
    const witnessKey = generateKeyPairSync('ed25519').privateKey;
    const soc = path.join(dir, 'soc');
    const collector = await startCollector({
      host: '127.0.0.1',
      port: 0,
      tls: { ca, cert: ccert, key: ckey },
      outDir: soc,
      gateways: [{ id: 'gw-1', verifierKey: vkey, identity: pki.gateway.spiffeId }],
      witness: cosigner('soc.example/witness', witnessKey),
    });
    try {
      const log = await AuditLog.open({ dir: spoolDir, gatewayId: 'gw-1', clock: new ManualClock() });
      const s = startShipper({ log, host: '127.0.0.1', port: collector.port, tls: { ca, cert: gcert, key: gkey }, gatewayId: 'gw-1', reconnect: { minMs: 10, maxMs: 50 } });
      const last = log.nextSeq - 1;
      const latestSize = log.latestCheckpoint()!.size;
      const cosigned = new Promise<void>((resolve) => s.on('cosigned', (size: number) => size === latestSize && resolve()));
      const acked = new Promise<void>((resolve) => s.on('acked', (seq: number) => seq >= last && resolve()));
      await Promise.all([cosigned, acked]);
      await s.close();
      await log.close();
      return { soc, wkey: cosignerVerifierKey('soc.example/witness', witnessKey), last };
    } finally {
      await collector.close();
    }
  }

  it("a tail cut back to a checkpoint with every trace removed: audit verify fails given the collector's cosigned checkpoint or its state", async () => {
    const spoolDir = path.join(dir, 'spool');
    await spool(spoolDir, 40);
    const { soc, wkey } = await shipToWitness(spoolDir);
    const witnessed = [path.join(soc, 'gw-1.checkpoint'), path.join(soc, 'gw-1.state.json')];
    const whole = await verify([spoolDir, '--witnessed', ...witnessed, '--witness-key', wkey]);
    expect(whole.out).toMatch(/^OK spool .*checked against 2 witnessed state/m);
    expect(whole.code).toBe(0);

    // Cut back to the checkpoint of size 17 (its record is seq 17): newer checkpoint files,
    // tree.hashes and acked.json cut to match. What is left is a whole log on its own.
    await cutBackTo(spoolDir, 18, true);
    const alone = await verify([spoolDir]);
    expect(alone.code).toBe(0);
    expect(alone.out).toContain('no --witnessed');
    const cut = await verify([spoolDir, '--witnessed', ...witnessed, '--witness-key', wkey]);
    expect(cut.code).toBe(1);
    expect(cut.out).toMatch(new RegExp(`FAIL \\S*gw-1\\.checkpoint: the witness holds a signed checkpoint of \\d+ records, but the spool's log holds only 18 records`));
    expect(cut.out).toMatch(/gw-1\.state\.json: the witness stored \d+ records, but the spool's log holds only 18 records: records 18\.\.\d+ are gone/);
  });

  it("proves a record the gateway already deleted from the collector's copy, and the bundle verifies like one from the spool", async () => {
    const spoolDir = path.join(dir, 'spool');
    await spool(spoolDir, 40);
    const { soc, last } = await shipToWitness(spoolDir);
    // The acknowledged records leave the spool (segments holding only acknowledged records are deleted).
    for (const f of await readdir(spoolDir)) if (f.endsWith('.seg')) await rm(path.join(spoolDir, f));
    const fromSpool = await run(['audit', 'prove', '--spool', spoolDir, '--seq', '12']);
    expect(fromSpool.code).toBe(1);
    expect(fromSpool.stderr).toContain('audit prove --collector <out_dir> --gateway <id> --seq 12');

    const bundleFile = path.join(dir, 'record-12.json');
    const proved = await run(['audit', 'prove', '--collector', soc, '--gateway', 'gw-1', '--seq', '12', '--out', bundleFile]);
    expect(proved.stderr).toBe('');
    expect(proved.code).toBe(0);
    const bundle = JSON.parse(await readFile(bundleFile, 'utf8')) as { leaf: string; index: number };
    // The leaf is the record the gateway hashed: its hash is the NDJSON line's.
    const line = (await readFile(path.join(soc, 'gw-1.ndjson'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { seq: number; hash: string }).find((l) => l.seq === 12)!;
    expect(createHash('sha256').update(Buffer.concat([Buffer.from([0]), Buffer.from(bundle.leaf, 'base64')])).digest('hex')).toBe(line.hash);
    const ok = await verify([bundleFile]);
    expect(ok.out).toMatch(/^OK inclusion bundle .*record 12/m);
    expect(ok.code).toBe(0);

    // Consistency from an old checkpoint the SOC kept, to the newest witnessed one.
    const sinceFile = path.join(dir, 'since-8.json');
    expect((await run(['audit', 'prove', '--collector', soc, '--gateway', 'gw-1', '--consistency', '8', '--out', sinceFile])).code).toBe(0);
    const pair = await verify([path.join(spoolDir, CHECKPOINT_DIR, checkpointFileName(8)), path.join(soc, 'gw-1.checkpoint'), '--proof', sinceFile]);
    expect(pair.code, pair.out).toBe(0);

    // An NDJSON line changed after the fact proves nothing.
    const ndjson = path.join(soc, 'gw-1.ndjson');
    await writeFile(ndjson, (await readFile(ndjson, 'utf8')).replace(/"sessionId":"ok"/, '"sessionId":"ko"'));
    const forged = await run(['audit', 'prove', '--collector', soc, '--gateway', 'gw-1', '--seq', '0']);
    expect(forged.code).toBe(1);
    expect(forged.stderr).toMatch(/re-encoded from the NDJSON hashes to [0-9a-f]+, but the leaf the collector stored is/);
    expect(last).toBeGreaterThan(12);
  });
});
