// Collectors reading gateways' audit from NATS JetStream (docs/audit.md, Fleets): real gateways'
// audit logs shipped by the JetStream sink to a real nats-server, and two collector processes'
// worth of collectors (each its own output directory) sharing one stream's gateways, each gateway
// read by one of them. Every record is verified (chain, tree, signed checkpoints) and stored once:
// none lost, none twice, across a collector restart; a message on a gateway's subject that is not
// its record is dropped with an alert and storing goes on.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, headers as natsHeaders } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifierKey } from '../../../src/audit/note.js';
import { encodeRecord, SCHEMA_VERSION } from '../../../src/audit/schema.js';
import { outcomeRecord } from '../../../src/audit/records.js';
import { startJetStreamIntake, type JetStreamIntake } from '../../../src/collector/jetstream.js';
import { startCollector, type Collector, type CollectorAlert } from '../../../src/collector/server.js';
import { ManualClock } from '../../../src/core/clock.js';
import { initPki, type PkiPaths } from '../../../src/identity/dev/pki.js';
import { shippingGateway, writeShipped, type ShippingGateway } from './nats-gateway.js';
import { freePort, natsServer, type NatsServer } from './nats-server.js';
import { untilEvent } from '../../events.js';

const clock = new ManualClock();
let root: string;
let nats: NatsServer;
let pki: PkiPaths;
const gateways: ShippingGateway[] = [];

async function gateway(id: string): Promise<ShippingGateway> {
  const g = await shippingGateway(root, nats.url, clock, id, 50);
  gateways.push(g);
  return g;
}

const write = writeShipped;

interface RunningCollector {
  collector: Collector;
  intake: JetStreamIntake;
  outDir: string;
  alerts: CollectorAlert[];
  close(): Promise<void>;
}

async function collector(name: string, takes: ShippingGateway[]): Promise<RunningCollector> {
  const outDir = join(root, name);
  const c = await startCollector({
    host: '127.0.0.1', port: 0, outDir,
    tls: { ca: await readFile(pki.ca.cert), cert: await readFile(pki.collector.cert), key: await readFile(pki.collector.key) },
    output: { layout: 'single', ocsf: false },
    gateways: gateways.map((g) => ({ id: g.id, verifierKey: verifierKey(`plantgate/${g.id}`, g.key) })),
  });
  const alerts: CollectorAlert[] = [];
  c.on('alert', (a: CollectorAlert) => alerts.push(a));
  const intake = await startJetStreamIntake({ collector: c, servers: [nats.url], gateways: takes.map((g) => g.id) });
  return {
    collector: c, intake, outDir, alerts,
    async close() {
      await intake.close();
      await c.close();
    },
  };
}

/**
 * The seqs of the complete lines of a collector's NDJSON for a gateway ([] when it stored none). The
 * collector may be writing a batch while this reads: a last line without its newline is not yet stored.
 */
async function seqsIn(c: RunningCollector, gatewayId: string): Promise<number[]> {
  const text = await readFile(join(c.outDir, `${gatewayId}.ndjson`), 'utf8').catch(() => '');
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  return complete.split('\n').filter((l) => l !== '').map((l) => Number((JSON.parse(l) as { seq: number }).seq));
}

/** Resolves once the collector has stored the gateway's records up to `seq`. */
async function storedThrough(c: RunningCollector, gatewayId: string, seq: number): Promise<void> {
  await untilEvent(c.collector, 'record', async () => Math.max(-1, ...(await seqsIn(c, gatewayId))) >= seq);
}

const upTo = (n: number) => [...Array(n).keys()];

describe('collectors reading the audit from JetStream', () => {
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'plantgate-collector-js-'));
    nats = natsServer(root, await freePort());
    await nats.start();
    pki = await initPki(join(root, 'pki'), { agents: [] });
  });

  afterAll(async () => {
    for (const g of gateways) {
      await g.sink.close();
      await g.log.close();
    }
    await nats?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('shares one stream\'s gateways between two collectors: each stores its gateways\' records once, verified, and none of the others', async () => {
    const [a, b, c] = [await gateway('gw-a'), await gateway('gw-b'), await gateway('gw-c')];
    await Promise.all([write(a, 120), write(b, 80), write(c, 60)]);
    const one = await collector('collector-1', [a, c]);
    const two = await collector('collector-2', [b]);
    try {
      await Promise.all([storedThrough(one, 'gw-a', a.log.nextSeq - 1), storedThrough(one, 'gw-c', c.log.nextSeq - 1), storedThrough(two, 'gw-b', b.log.nextSeq - 1)]);
      expect(await seqsIn(one, 'gw-a')).toEqual(upTo(a.log.nextSeq));
      expect(await seqsIn(one, 'gw-c')).toEqual(upTo(c.log.nextSeq));
      expect(await seqsIn(two, 'gw-b')).toEqual(upTo(b.log.nextSeq));
      expect([await seqsIn(one, 'gw-b'), await seqsIn(two, 'gw-a'), await seqsIn(two, 'gw-c')]).toEqual([[], [], []]);
      // Checkpoints were verified against the tree and their signatures (a bad one is an alert).
      expect([...one.alerts, ...two.alerts]).toEqual([]);
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('goes on after a restart where it stopped: records stored while it was down come once, none twice', async () => {
    const a = gateways.find((g) => g.id === 'gw-a')!;
    const first = await collector('collector-1', [a]);
    await write(a, 30);
    await storedThrough(first, 'gw-a', a.log.nextSeq - 1);
    await first.close();
    await write(a, 40);
    const again = await collector('collector-1', [a]);
    try {
      await storedThrough(again, 'gw-a', a.log.nextSeq - 1);
      expect(await seqsIn(again, 'gw-a')).toEqual(upTo(a.log.nextSeq));
      expect(again.alerts).toEqual([]);
    } finally {
      await again.close();
    }
  });

  it('drops a message on a gateway\'s subject that is not its record, says so, and stores the real one', async () => {
    const b = gateways.find((g) => g.id === 'gw-b')!;
    const two = await collector('collector-2', [b]);
    try {
      // A record claiming the next seq of gw-b, well formed, but chained to nothing it stored.
      const next = b.log.nextSeq;
      const forged = encodeRecord({ schemaVersion: SCHEMA_VERSION, gatewayId: 'gw-b', seq: next, timeUnixMs: clock.now(), prevHash: new Uint8Array(32).fill(7), ...outcomeRecord({ decisionSeq: 0, sessionId: 'forged', status: 'ok' }) });
      const nc = await connect({ servers: nats.url });
      const h = natsHeaders();
      h.set('Plantgate-Seq', String(next));
      await nc.jetstream().publish('plantgate.audit.plant-a.gw-b', forged, { headers: h, msgID: 'forged-1' });
      await nc.close();
      await write(b, 10);
      await storedThrough(two, 'gw-b', b.log.nextSeq - 1);
      expect(await seqsIn(two, 'gw-b')).toEqual(upTo(b.log.nextSeq));
      // The collector's own: the forged message did not chain (the gateway's sink reports it too, in its log).
      expect(two.alerts.some((x) => x.kind === 'sink_alert' && /does not chain/.test(x.message))).toBe(true);
      expect(two.alerts.every((x) => x.kind === 'sink_alert')).toBe(true);
    } finally {
      await two.close();
    }
  });
});
