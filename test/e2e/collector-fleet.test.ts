// Two `plantgate collector` processes sharing one JetStream stream's gateways (docs/audit.md,
// Fleets): gateways ship their audit to a real nats-server, each collector process is configured
// with its share (nats.gateways), and between them every record of every gateway is stored once,
// verified against the gateway's checkpoint key, by the collector it belongs to.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import { startNatsSink, type NatsSink } from '../../src/audit/nats-sink.js';
import { noteSigner, verifierKey } from '../../src/audit/note.js';
import { outcomeRecord } from '../../src/audit/records.js';
import { ManualClock } from '../../src/core/clock.js';
import { initPki } from '../../src/identity/dev/pki.js';
import { freePort, natsServer, type NatsServer } from '../integration/audit/nats-server.js';
import { assertBuilt, start } from './cli.js';

let dir: string;
let nats: NatsServer;

beforeAll(async () => {
  assertBuilt();
  dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-colfleet-'));
  nats = natsServer(dir, await freePort());
  await nats.start();
});
afterAll(async () => {
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** The seqs a collector process wrote for a gateway, once it has written `count` of them. */
async function storedSeqs(file: string, count: number): Promise<number[]> {
  for (let i = 0; i < 800; i++) {
    const text = await readFile(file, 'utf8').catch(() => '');
    // Only complete lines: the collector may be writing a batch while this reads.
    const lines = text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter((l) => l !== '');
    if (lines.length >= count) return lines.map((l) => Number((JSON.parse(l) as { seq: number }).seq));
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${file}: fewer than ${count} records after 20 s`);
}

describe('a fleet of collector processes on one JetStream stream', () => {
  it('stores every record of every gateway once, each gateway by the collector given it', async () => {
    await initPki(path.join(dir, 'pki'), { agents: [] });
    const clock = new ManualClock();
    const gws: { id: string; key: KeyObject; log: AuditLog; sink: NatsSink }[] = [];
    for (const id of ['gw-a', 'gw-b']) {
      const key = generateKeyPairSync('ed25519').privateKey;
      const log = await AuditLog.open({ dir: path.join(dir, `spool-${id}`), gatewayId: id, clock, checkpoints: { signer: noteSigner(`plantgate/${id}`, key), everyRecords: 10 } });
      const sink = startNatsSink({ log, gatewayId: id, site: 'plant-a', servers: [nats.url], createStream: true, reconnect: { minMs: 20, maxMs: 200 } });
      for (let i = 0; i < 40; i++) log.append(outcomeRecord({ decisionSeq: i, sessionId: 's', status: 'ok' }));
      gws.push({ id, key, log, sink });
    }
    const listed = gws.map((g) => `  - { id: ${g.id}, verifier_key: "${verifierKey(`plantgate/${g.id}`, g.key)}" }`).join('\n');
    const collectors = [];
    for (const [n, takes] of [[1, 'gw-a'], [2, 'gw-b']] as const) {
      const config = path.join(dir, `collector-${n}.yaml`);
      await writeFile(
        config,
        `listen: { host: 127.0.0.1, port: 0 }\ntls: { ca: pki/ca.crt, cert: pki/collector.crt, key: pki/collector.key }\nout_dir: out-${n}\noutput: { layout: single, ocsf: false }\n` +
          `gateways:\n${listed}\nnats: { servers: ["${nats.url}"], gateways: [${takes}] }\n`,
      );
      collectors.push(await start(['collector', '--config', config], 'collector listening'));
    }
    try {
      const total = gws[0]!.log.nextSeq; // 40 records and 4 checkpoints each
      const all = [...Array(total).keys()];
      expect(await storedSeqs(path.join(dir, 'out-1', 'gw-a.ndjson'), total)).toEqual(all);
      expect(await storedSeqs(path.join(dir, 'out-2', 'gw-b.ndjson'), total)).toEqual(all);
      expect([await readFile(path.join(dir, 'out-1', 'gw-b.ndjson'), 'utf8').catch(() => ''), await readFile(path.join(dir, 'out-2', 'gw-a.ndjson'), 'utf8').catch(() => '')]).toEqual(['', '']);
      expect([await readFile(path.join(dir, 'out-1', 'alerts.ndjson'), 'utf8'), await readFile(path.join(dir, 'out-2', 'alerts.ndjson'), 'utf8')]).toEqual(['', '']);
    } finally {
      for (const c of collectors) c.child.kill('SIGTERM');
      for (const c of collectors) expect((await c.exited).code).toBe(0);
      for (const g of gws) {
        await g.sink.close();
        await g.log.close();
      }
    }
  });
});
