// A fleet of collectors sharing one JetStream stream's gateways by leases (docs/audit.md, Fleets):
// real gateways' audit logs shipped by the JetStream sink to a real nats-server, collectors that all
// list every gateway and split them between them, hand a gateway over with its verification state
// when the shares change, and fence off a former holder that writes after losing its lease.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifierKey } from '../../../src/audit/note.js';
import { Handover } from '../../../src/collector/fleet.js';
import { startJetStreamIntake, type JetStreamIntake } from '../../../src/collector/jetstream.js';
import { startCollector, type Collector, type CollectorAlert } from '../../../src/collector/server.js';
import { EMPTY_STATE, parseState } from '../../../src/collector/state.js';
import { ManualClock } from '../../../src/core/clock.js';
import { initPki, type PkiPaths } from '../../../src/identity/dev/pki.js';
import { shippingGateway, writeShipped, type ShippingGateway } from './nats-gateway.js';
import { freePort, natsServer, type NatsServer } from './nats-server.js';

const clock = new ManualClock();
let root: string;
let nats: NatsServer;
let pki: PkiPaths;
const gateways: ShippingGateway[] = [];

async function gateway(id: string): Promise<ShippingGateway> {
  const g = await shippingGateway(root, nats.url, clock, id, 25);
  gateways.push(g);
  return g;
}

const write = writeShipped;

interface Member {
  name: string;
  collector: Collector;
  intake: JetStreamIntake;
  outDir: string;
  alerts: CollectorAlert[];
}

async function member(name: string): Promise<Member> {
  const outDir = join(root, name);
  const c = await startCollector({
    host: '127.0.0.1', port: 0, outDir,
    tls: { ca: await readFile(pki.ca.cert), cert: await readFile(pki.collector.cert), key: await readFile(pki.collector.key) },
    output: { layout: 'single', ocsf: false },
    gateways: gateways.map((g) => ({ id: g.id, verifierKey: verifierKey(`plantgate/${g.id}`, g.key) })),
  });
  const alerts: CollectorAlert[] = [];
  c.on('alert', (a: CollectorAlert) => alerts.push(a));
  const intake = await startJetStreamIntake({ collector: c, servers: [nats.url], gateways: gateways.map((g) => g.id), fleet: { member: name, leaseMs: 1000 }, ackWaitMs: 2000 });
  return { name, collector: c, intake, outDir, alerts };
}

async function leave(m: Member): Promise<void> {
  await m.intake.close();
  await m.collector.close();
}

/** The seqs of the complete lines of an NDJSON file ([] when absent). */
async function seqsOf(file: string): Promise<number[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  return complete.split('\n').filter((l) => l !== '').map((l) => Number((JSON.parse(l) as { seq: number }).seq));
}

/** The seqs of a member's NDJSON for a gateway: its copies set aside (earlier/) and its current one. */
async function seqsIn(m: Member, gatewayId: string): Promise<number[]> {
  const earlier = (await readdir(join(m.outDir, 'earlier')).catch(() => [])).filter((d) => d.startsWith(`${gatewayId}.`));
  const files = [...earlier.map((d) => join(m.outDir, 'earlier', d, `${gatewayId}.ndjson`)), join(m.outDir, `${gatewayId}.ndjson`)];
  return (await Promise.all(files.map(seqsOf))).flat();
}

/** Every seq the members stored for the gateway, in order, once they have stored `count` between them. */
async function storedByFleet(members: Member[], gatewayId: string, count: number): Promise<number[]> {
  for (;;) {
    const all = (await Promise.all(members.map((m) => seqsIn(m, gatewayId)))).flat().sort((x, y) => x - y);
    if (all.length >= count) return all;
    await Promise.race(members.map((m) => new Promise<void>((resolve) => m.collector.once('record', () => resolve()))).concat(new Promise<void>((resolve) => setTimeout(resolve, 200))));
  }
}

/** Resolves once `m` holds `n` gateways (the fleet's leases are renewed every leaseMs / 3). */
async function holds(m: Member, n: number): Promise<void> {
  while (m.intake.holding().length !== n) await new Promise<void>((resolve) => setTimeout(resolve, 50));
}

const upTo = (n: number) => [...Array(n).keys()];

describe('a fleet of collectors sharing gateways by leases', () => {
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'plantgate-collector-fleet-'));
    nats = natsServer(root, await freePort());
    await nats.start();
    pki = await initPki(join(root, 'pki'), { agents: [] });
    for (const id of ['gw-a', 'gw-b', 'gw-c']) await gateway(id);
  });

  afterAll(async () => {
    for (const g of gateways) {
      await g.sink.close();
      await g.log.close();
    }
    await nats?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('splits the gateways between the members, hands one over with its state, and stores every record once', async () => {
    await Promise.all(gateways.map((g) => write(g, 60)));
    const one = await member('one');
    // Alone, the first member takes every gateway.
    expect(one.intake.holding().sort()).toEqual(['gw-a', 'gw-b', 'gw-c']);
    await Promise.all(gateways.map((g) => storedByFleet([one], g.id, g.log.nextSeq)));
    const two = await member('two');
    try {
      // Three gateways, two members: a share is two; the first gives one back, the second takes it.
      await holds(two, 1);
      await holds(one, 2);
      await Promise.all(gateways.map((g) => write(g, 40)));
      for (const g of gateways) expect(await storedByFleet([one, two], g.id, g.log.nextSeq)).toEqual(upTo(g.log.nextSeq));
      const moved = two.intake.holding()[0]!;
      // The second member's copy of the moved gateway begins where the first one's ends.
      const [first, second] = [await seqsOf(join(one.outDir, `${moved}.ndjson`)), await seqsOf(join(two.outDir, `${moved}.ndjson`))];
      expect(first.length).toBeGreaterThan(0);
      expect(second[0]).toBe(first.at(-1)! + 1);
      const state = parseState(await readFile(join(two.outDir, `${moved}.state.json`), 'utf8'), 'state');
      expect(state.firstSeq).toBe(second[0]);
      // Checkpoints after the hand-over were verified from the handed-over tree.
      expect([...one.alerts, ...two.alerts]).toEqual([]);
    } finally {
      await leave(two);
    }
    // The second member left: its gateway comes back to the first, from where the second stored it;
    // the first one's own older copy of it (behind the fleet's) is set aside whole.
    await holds(one, 3);
    await Promise.all(gateways.map((g) => write(g, 10)));
    try {
      for (const g of gateways) expect(await storedByFleet([one, two], g.id, g.log.nextSeq)).toEqual(upTo(g.log.nextSeq));
      expect(await readdir(join(one.outDir, 'earlier'))).toHaveLength(1);
      expect([...one.alerts, ...two.alerts]).toEqual([]);
    } finally {
      await leave(one);
    }
  });

  it('fences off a former holder: once another collector took the gateway, its state writes fail and it acknowledges nothing', async () => {
    const nc = await connect({ servers: nats.url });
    try {
      const kv = await nc.jetstream().views.kv('fence-test', { history: 1 });
      const state = { ...EMPTY_STATE, nextSeq: 5, frontier: undefined };
      // The former holder wrote the state once; the taker read it and wrote it back (the fence).
      const former = new Handover(kv, 'gw-x', 0, () => undefined);
      const acks: string[] = [];
      former.stored(state, () => acks.push('former: 5'));
      await former.flushed();
      const entry = (await kv.get('gw-x'))!;
      let lost = '';
      const stale = new Handover(kv, 'gw-x', entry.revision, (why) => (lost = why));
      const taker = new Handover(kv, 'gw-x', entry.revision, () => undefined);
      await taker.fence(entry.value);
      stale.stored({ ...state, nextSeq: 9 }, () => acks.push('former: 9'));
      await stale.flushed();
      expect(acks).toEqual(['former: 5']);
      expect(lost).toMatch(/could not be handed over/);
      expect(parseState(new TextDecoder().decode((await kv.get('gw-x'))!.value), 'kv').nextSeq).toBe(5);
    } finally {
      await nc.close();
    }
  });
});
