// The collector as a witness: it recomputes each gateway's tree from the records it stores, checks
// every signed checkpoint against it, countersigns, and the gateway keeps the cosignature; it
// refuses a gateway whose certificate does not prove the id it claims, a checkpoint signed by the
// wrong key, and a correctly signed checkpoint over a rewritten history.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cosigner, cosignerVerifierKey, parseCosignerVerifierKey, signCheckpoint } from '../../../src/audit/checkpoint.js';
import { leafHash, toHex, ZERO_HASH } from '../../../src/audit/hash.js';
import { AuditLog, CHECKPOINT_DIR, checkpointFileName } from '../../../src/audit/log.js';
import { MemoryHashStore } from '../../../src/audit/merkle.js';
import { noteSigner, parseNote, verifierKey } from '../../../src/audit/note.js';
import { outcomeRecord } from '../../../src/audit/records.js';
import { encodeRecord, pb } from '../../../src/audit/schema.js';
import { startShipper, type Shipper } from '../../../src/audit/shipper.js';
import { startCollector, type Collector, type CollectorAlert, type CollectorOptions } from '../../../src/collector/server.js';
import { ManualClock } from '../../../src/core/clock.js';
import { initPki } from '../../../src/identity/dev/pki.js';

interface Pair {
  cert: string;
  key: string;
}
let pem: { ca: string; gateway: Pair; collector: Pair; rogue: Pair; gatewaySpiffeId: string };
let root: string;
let spoolDir: string;
let outDir: string;
const clock = new ManualClock();
const cleanup: (() => Promise<void>)[] = [];

const gwKey = generateKeyPairSync('ed25519').privateKey;
const gwSigner = noteSigner('plantgate/gw-1', gwKey);
const gwVerifierKey = verifierKey('plantgate/gw-1', gwKey);
const witnessKey = generateKeyPairSync('ed25519').privateKey;
const witness = cosigner('soc.example/witness', witnessKey);
const witnessVerifier = parseCosignerVerifierKey(cosignerVerifierKey('soc.example/witness', witnessKey));

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'plantgate-pki-'));
  const p = await initPki(dir, { agents: [{ name: 'rogue', spiffeId: 'spiffe://plant.example/agent/rogue' }] });
  const read = (f: string) => readFile(f, 'utf8');
  pem = {
    ca: await read(p.ca.cert),
    gateway: { cert: await read(p.gateway.cert), key: await read(p.gateway.key) },
    collector: { cert: await read(p.collector.cert), key: await read(p.collector.key) },
    rogue: { cert: await read(p.agents.rogue.cert), key: await read(p.agents.rogue.key) },
    gatewaySpiffeId: p.gateway.spiffeId,
  };
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'plantgate-witness-'));
  spoolDir = join(root, 'spool');
  outDir = join(root, 'out');
});

afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
  await rm(root, { recursive: true, force: true });
});

async function collector(opts: Partial<CollectorOptions> = {}, port = 0): Promise<Collector> {
  const c = await startCollector({
    host: '127.0.0.1',
    port,
    tls: { ca: pem.ca, ...pem.collector },
    outDir,
    gateways: [{ id: 'gw-1', verifierKey: gwVerifierKey, identity: pem.gatewaySpiffeId }],
    witness,
    clock,
    ...opts,
  });
  cleanup.push(() => c.close());
  return c;
}

async function gatewayLog(signer = gwSigner, everyRecords = 10): Promise<AuditLog> {
  const log = await AuditLog.open({ dir: spoolDir, gatewayId: 'gw-1', clock, checkpoints: { signer, everyRecords, everyMs: 3_600_000 } });
  cleanup.push(() => log.close());
  return log;
}

function ship(log: AuditLog, port: number, certs: Pair = pem.gateway, gatewayId = 'gw-1'): Shipper {
  const s = startShipper({
    log,
    host: '127.0.0.1',
    port,
    tls: { ca: pem.ca, ...certs },
    gatewayId,
    reconnect: { minMs: 10, maxMs: 50 },
    witnessKeys: [cosignerVerifierKey('soc.example/witness', witnessKey)],
  });
  cleanup.push(() => s.close());
  return s;
}

/**
 * The next alert matching `want` (every alert when absent). A shipper being closed may still retry
 * once on a loaded machine and raise its own alert again: a test waits for the alert it caused.
 */
function nextAlert(c: Collector, want: (a: CollectorAlert) => boolean = () => true): Promise<CollectorAlert> {
  return new Promise((resolve) => {
    const on = (a: CollectorAlert) => {
      if (!want(a)) return;
      c.off('alert', on);
      resolve(a);
    };
    c.on('alert', on);
  });
}

function cosignedThrough(s: Shipper, size: number): Promise<void> {
  return new Promise((resolve) => {
    const on = (n: number) => {
      if (n >= size) {
        s.off('cosigned', on);
        resolve();
      }
    };
    s.on('cosigned', on);
  });
}

const ev = (i: number) => outcomeRecord({ decisionSeq: i, sessionId: 's', status: 'ok', upstreamLatencyUs: i });

async function ndjsonSeqs(): Promise<number[]> {
  const text = await readFile(join(outDir, 'gw-1.ndjson'), 'utf8').catch(() => '');
  return text.trim() === '' ? [] : text.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
}

describe('collector as witness', () => {
  it('countersigns every checkpoint it verified, and the gateway keeps the cosignature next to its checkpoint', async () => {
    const col = await collector();
    const log = await gatewayLog();
    const s = ship(log, col.port);
    // 10 records → checkpoint (seq 10, size 10); 10 more → checkpoint (seq 21, size 21); 10 → size 32.
    const done = cosignedThrough(s, 32);
    for (let i = 0; i < 30; i++) log.append(ev(i));
    await log.sync();
    await done;

    for (const size of [10, 21, 32]) {
      const note = await readFile(join(spoolDir, CHECKPOINT_DIR, checkpointFileName(size)), 'utf8');
      const parsed = parseNote(note);
      expect(parsed.sigs.map((x) => x.name)).toEqual(['plantgate/gw-1', 'soc.example/witness']);
      const line = note.split('\n').find((l) => l.includes('soc.example/witness'))!;
      expect(witnessVerifier.verify(parsed.text, line)).toBe(Math.floor(clock.now() / 1000));
    }
    // The SOC keeps the newest witnessed checkpoint with both signatures.
    const latest = parseNote(await readFile(join(outDir, 'gw-1.checkpoint'), 'utf8'));
    expect(latest.text.split('\n')[1]).toBe('32');
    expect(latest.sigs).toHaveLength(2);
    expect(col.stats()).toMatchObject({ cosignatures: 3, alerts: {} });
    // The collector's state carries the tree, so a restart goes on witnessing without a rescan.
    const state = JSON.parse(await readFile(join(outDir, 'gw-1.state.json'), 'utf8')) as { next_seq: number; tree: string[]; checkpoint: { size: number } };
    expect(state.next_seq).toBe(33);
    expect(state.tree).toHaveLength(2); // 33 = 0b100001: two complete subtrees on the right edge
    expect(state.checkpoint.size).toBe(32);
  });

  it('raises bad_signature for a checkpoint signed with a key other than the gateway’s and stores nothing from it on', async () => {
    const col = await collector();
    const wrong = noteSigner('plantgate/gw-1', generateKeyPairSync('ed25519').privateKey);
    const log = await gatewayLog(wrong, 5);
    const alert = nextAlert(col);
    ship(log, col.port);
    for (let i = 0; i < 5; i++) log.append(ev(i));
    await log.sync();
    const a = await alert;
    expect(a).toMatchObject({ kind: 'bad_signature', gatewayId: 'gw-1', gotSeq: 5 });
    expect(await ndjsonSeqs()).toEqual([0, 1, 2, 3, 4]);
    const alerts = (await readFile(join(outDir, 'alerts.ndjson'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as CollectorAlert);
    expect(alerts[0].kind).toBe('bad_signature');
  });

  it('raises inconsistent_checkpoint for a correctly signed checkpoint over a rewritten history (a fork)', async () => {
    const col = await collector();
    // A gateway that signs a tree of records other than the ones it sent: the root the key vouches
    // for is not the root of what the SOC received.
    const sent: Uint8Array[] = [];
    const shadow = new MemoryHashStore();
    let prev: Uint8Array = ZERO_HASH;
    for (let i = 0; i < 4; i++) {
      const bytes = encodeRecord({ ...ev(i), schemaVersion: 1, gatewayId: 'gw-1', seq: i, timeUnixMs: clock.now(), prevHash: prev });
      prev = leafHash(bytes);
      sent.push(bytes);
      shadow.append(leafHash(encodeRecord({ ...ev(100 + i), schemaVersion: 1, gatewayId: 'gw-1', seq: i, timeUnixMs: clock.now(), prevHash: ZERO_HASH })));
    }
    const forged = shadow.frontier.root();
    const note = signCheckpoint({ origin: 'plantgate/gw-1', size: 4, root: forged }, gwSigner);
    sent.push(encodeRecord({ checkpoint: { treeSize: 4, rootHash: forged, origin: 'plantgate/gw-1', note }, schemaVersion: 1, gatewayId: 'gw-1', seq: 4, timeUnixMs: clock.now(), prevHash: prev }));

    const alert = nextAlert(col);
    const socket = tls.connect({ host: '127.0.0.1', port: col.port, ca: pem.ca, ...pem.gateway, servername: 'localhost' });
    cleanup.push(async () => void socket.destroy());
    socket.on('error', () => undefined);
    await new Promise<void>((r) => socket.once('secureConnect', () => r()));
    socket.write(pb.ShipperFrame.encodeDelimited({ hello: { streamVersion: 1, gatewayId: 'gw-1' } }).finish());
    for (const r of sent) socket.write(pb.ShipperFrame.encodeDelimited({ record: r }).finish());
    const a = await alert;
    expect(a.kind).toBe('inconsistent_checkpoint');
    expect(a.gotSeq).toBe(4);
    expect(a.actual).toBe(toHex(forged));
    expect(a.message).toMatch(/history was rewritten/);
    expect(await ndjsonSeqs()).toEqual([0, 1, 2, 3]);
  });

  it('refuses a gateway certificate that does not prove the claimed gateway id (one gateway cannot write as another)', async () => {
    const col = await collector({
      gateways: [
        { id: 'gw-1', verifierKey: gwVerifierKey, identity: pem.gatewaySpiffeId },
        { id: 'gw-2', verifierKey: gwVerifierKey, identity: 'spiffe://plant.example/gateway/gw-2' },
      ],
    });
    const log = await gatewayLog();
    log.append(ev(0));
    await log.sync();

    let alert = nextAlert(col);
    const s = ship(log, col.port, pem.gateway, 'gw-2');
    expect(await alert).toMatchObject({ kind: 'identity_mismatch', actual: pem.gatewaySpiffeId, expected: 'spiffe://plant.example/gateway/gw-2' });
    await s.close();

    alert = nextAlert(col, (a) => a.expected === pem.gatewaySpiffeId);
    const r = ship(log, col.port, pem.rogue, 'gw-1');
    expect(await alert).toMatchObject({ kind: 'identity_mismatch', actual: 'spiffe://plant.example/agent/rogue' });
    await r.close();

    alert = nextAlert(col, (a) => a.kind === 'unknown_gateway');
    const u = ship(log, col.port, pem.gateway, 'gw-9');
    expect(await alert).toMatchObject({ kind: 'unknown_gateway' });
    await u.close();
    expect(await ndjsonSeqs()).toEqual([]);
    // Each refused shipper may retry before it is closed: at least one alert per impostor.
    expect(col.stats().alerts.identity_mismatch).toBeGreaterThanOrEqual(2);
    expect(col.stats().alerts.unknown_gateway).toBeGreaterThanOrEqual(1);
  });

  it('in open mode binds a gateway id to the first certificate that used it', async () => {
    const col = await collector({ gateways: undefined, witness: undefined });
    const log = await gatewayLog();
    const s = ship(log, col.port);
    await new Promise((r) => s.once('connected', r));
    await s.close();
    const state = JSON.parse(await readFile(join(outDir, 'gw-1.state.json'), 'utf8')) as { certificate_identity: string };
    expect(state.certificate_identity).toBe(pem.gatewaySpiffeId);
    const alert = nextAlert(col);
    ship(log, col.port, pem.rogue, 'gw-1');
    expect(await alert).toMatchObject({ kind: 'identity_mismatch', expected: pem.gatewaySpiffeId });
  });

  it('rebuilds the tree from the NDJSON hashes after losing its state file, and goes on witnessing', async () => {
    const col = await collector();
    const port = col.port;
    const log = await gatewayLog();
    const s = ship(log, port);
    let done = cosignedThrough(s, 21);
    for (let i = 0; i < 20; i++) log.append(ev(i));
    await log.sync();
    await done;
    await col.close();
    // A crash that lost the state file entirely (or left one from before the tree existed).
    await writeFile(join(outDir, 'gw-1.state.json'), JSON.stringify({ next_seq: 3, last_hash: toHex(new Uint8Array(32)) }));
    const again = await collector({}, port);
    done = cosignedThrough(s, 43);
    for (let i = 20; i < 40; i++) log.append(ev(i));
    await log.sync();
    await done;
    expect(await ndjsonSeqs()).toEqual([...Array(44).keys()]);
    expect(again.stats().alerts).toEqual({});
  });
});
