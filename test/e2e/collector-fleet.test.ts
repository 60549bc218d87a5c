// Two `plantgate collector` processes sharing one JetStream stream's gateways (docs/audit.md,
// Fleets): gateways ship their audit to a real nats-server, and between the collector processes
// every record of every gateway is stored once, verified against the gateway's checkpoint key.
// Shared by configuration (each process given its gateways), or as a fleet (nats.fleet: leases),
// where a collector killed with SIGKILL has its gateways taken over by the one left.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { connect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import { startNatsSink, type NatsSink } from '../../src/audit/nats-sink.js';
import { noteSigner, verifierKey } from '../../src/audit/note.js';
import { outcomeRecord } from '../../src/audit/records.js';
import { parseState } from '../../src/collector/state.js';
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
  await initPki(path.join(dir, 'pki'), { agents: [] });
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

  it('as a fleet: splits the gateways, and when a collector is killed the other takes its gateways over from the state it handed over', async () => {
    const clock = new ManualClock();
    const ids = ['gw-f1', 'gw-f2', 'gw-f3'];
    const gws: { id: string; key: KeyObject; log: AuditLog; sink: NatsSink }[] = [];
    const write = async (n: number) => {
      for (const g of gws) for (let i = 0; i < n; i++) g.log.append(outcomeRecord({ decisionSeq: i, sessionId: 's', status: 'ok' }));
      for (const g of gws) while (g.log.ackedSeq < g.log.nextSeq - 1) await new Promise<void>((resolve) => g.sink.once('acked', () => resolve()));
    };
    for (const id of ids) {
      const key = generateKeyPairSync('ed25519').privateKey;
      const log = await AuditLog.open({ dir: path.join(dir, `spool-${id}`), gatewayId: id, clock, checkpoints: { signer: noteSigner(`plantgate/${id}`, key), everyRecords: 10 } });
      gws.push({ id, key, log, sink: startNatsSink({ log, gatewayId: id, site: 'plant-a', servers: [nats.url], createStream: true, reconnect: { minMs: 20, maxMs: 200 } }) });
    }
    await write(40);
    const listed = gws.map((g) => `  - { id: ${g.id}, verifier_key: "${verifierKey(`plantgate/${g.id}`, g.key)}" }`).join('\n');
    const startMember = async (name: string) => {
      const config = path.join(dir, `fleet-${name}.yaml`);
      await writeFile(
        config,
        `listen: { host: 127.0.0.1, port: 0 }\ntls: { ca: pki/ca.crt, cert: pki/collector.crt, key: pki/collector.key }\nout_dir: fleet-${name}\noutput: { layout: single, ocsf: false }\n` +
          `gateways:\n${listed}\nnats: { servers: ["${nats.url}"], gateways: [${ids.join(', ')}], fleet: { member: ${name}, lease_ms: 1000 }, ack_wait_ms: 2000 }\n`,
      );
      return start(['collector', '--config', config], 'collector listening');
    };
    const nc = await connect({ servers: nats.url });
    // Bound once the first member made them (with the lease bucket's max age).
    const bucket = (name: string) => nc.jetstream().views.kv(name, { bindOnly: true });
    /** Who holds each gateway's lease, once every gateway is held by one of `members` and `test` holds. */
    const holders = async (test: (h: string[]) => boolean): Promise<string[]> => {
      for (;;) {
        const leases = await bucket('plantgate-collector-leases');
        const h = await Promise.all(ids.map(async (id) => new TextDecoder().decode((await leases.get(`gateway.${id}`))?.value ?? new Uint8Array())));
        if (test(h)) return h;
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    /** Resolves once the fleet's state says every record of every gateway is stored. */
    const handedOverAll = async () => {
      for (const g of gws) {
        for (;;) {
          const e = await (await bucket('plantgate-collector-state')).get(g.id);
          if (e?.operation === 'PUT' && parseState(new TextDecoder().decode(e.value), 'state').nextSeq === g.log.nextSeq) break;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    };
    /** Every seq stored for a gateway across both members' outputs (current and set-aside copies), sorted. */
    const storedSeqsOf = async (id: string) => {
      const files: string[] = [];
      for (const name of ['one', 'two']) {
        const out = path.join(dir, `fleet-${name}`);
        files.push(path.join(out, `${id}.ndjson`));
        for (const d of await readdir(path.join(out, 'earlier')).catch(() => [])) if (d.startsWith(`${id}.`)) files.push(path.join(out, 'earlier', d, `${id}.ndjson`));
      }
      const seqs: number[] = [];
      for (const f of files) {
        const text = await readFile(f, 'utf8').catch(() => '');
        for (const l of text.split('\n')) if (l !== '') seqs.push(Number((JSON.parse(l) as { seq: number }).seq));
      }
      return seqs.sort((a, b) => a - b);
    };
    const one = await startMember('one');
    let two: Awaited<ReturnType<typeof startMember>> | undefined;
    try {
      await holders((h) => h.every((m) => m === 'one'));
      two = await startMember('two');
      // Two members, three gateways: a share is two.
      const split = await holders((h) => h.filter((m) => m === 'one').length === 2 && h.filter((m) => m === 'two').length === 1);
      await write(30);
      await handedOverAll();
      // Killed at rest (every record stored and handed over): the other member takes its gateways.
      one.child.kill('SIGKILL');
      expect((await one.exited).signal).toBe('SIGKILL');
      await write(30);
      expect(await holders((h) => h.every((m) => m === 'two'))).toEqual(['two', 'two', 'two']);
      await handedOverAll();
      for (const g of gws) expect(await storedSeqsOf(g.id)).toEqual([...Array(g.log.nextSeq).keys()]);
      // What the killed member held goes on in the other's output from where it ended.
      for (const [i, id] of ids.entries()) {
        if (split[i] !== 'one') continue;
        const state = parseState(await readFile(path.join(dir, 'fleet-two', `${id}.state.json`), 'utf8'), 'state');
        expect(state.firstSeq).toBeGreaterThan(0);
      }
      expect([await readFile(path.join(dir, 'fleet-one', 'alerts.ndjson'), 'utf8'), await readFile(path.join(dir, 'fleet-two', 'alerts.ndjson'), 'utf8')]).toEqual(['', '']);
    } finally {
      one.child.kill('SIGKILL');
      two?.child.kill('SIGTERM');
      if (two) expect((await two.exited).code).toBe(0);
      await nc.close();
      for (const g of gws) {
        await g.sink.close();
        await g.log.close();
      }
    }
  });
});
