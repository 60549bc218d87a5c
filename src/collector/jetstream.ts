// Collectors reading the audit from NATS JetStream (docs/audit.md, Fleets: NATS JetStream): for each
// gateway this collector takes, a durable pull consumer on the gateway's subject feeds the
// collector's own verify-and-store loop (server.ts), so a record from the bus is checked and stored
// exactly like one from a TLS stream, and acknowledged on the bus (ack-all) only once it is stored.
// A gateway's records must be verified in order by one collector (the chain and the tree are per
// gateway), so the unit collectors share out is the gateway: each collector is given its gateways,
// or takes them by lease as a member of a fleet (fleet.ts), and the consumer is durable on the
// server, so a restarted collector, or the one taking a gateway over, goes on where it was.
// The bus is not trusted: whoever may publish on a subject can put anything there. Messages are
// ordered by the seq of the record they carry; for each seq the one that chains to the stored
// record is kept, a copy of one already stored is dropped, and one that is not the gateway's record
// (it does not chain) is dropped and reported as a sink_alert notice; a record that arrives ahead of
// its predecessors waits (bounded) until they come.
// Owns the NATS connection and the consumers; never writes outputs itself.
import { AckPolicy, connect, credsAuthenticator, DeliverPolicy, nanos, nkeyAuthenticator, type Authenticator, type ConsumerMessages, type JsMsg, type NatsConnection } from 'nats';
import { readFileSync } from 'node:fs';
import { hashEquals, leafHash } from '../audit/hash.js';
import { BulkDecoder } from '../audit/bulk-decode.js';
import { silentLogger, type Logger } from '../core/log.js';
import { FleetMembership, type FleetOptions, type Handover } from './fleet.js';
import type { AttachedStream, Collector, ReceivedRecord } from './server.js';
import type { GatewayState } from './state.js';

export interface JetStreamIntakeOptions {
  collector: Pick<Collector, 'attach' | 'release'>;
  servers: string[];
  /** The gateways this collector takes from the stream (each by one collector of a fleet). */
  gateways: string[];
  /** Default PLANTGATE_AUDIT. */
  stream?: string;
  /** Default `plantgate.audit`: a gateway's subject is `<prefix>.<site>.<gateway id>`. */
  subjectPrefix?: string;
  /** Durable consumer `<prefix>-<gateway id>`. Default `plantgate-collector`. */
  consumerPrefix?: string;
  tls?: { ca: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  auth?: { credsFile?: string; nkeySeedFile?: string };
  logger?: Logger;
  /**
   * Records arriving ahead of a missing one that are held before the gateway's stream is given up
   * (gap). Default 10,000: below the consumer's 20,000 unacknowledged messages, so a gap is
   * reported before the server stops delivering.
   */
  maxHeld?: number;
  /** Share the gateways with a fleet of collectors by leases (fleet.ts); without it, read every gateway listed. */
  fleet?: FleetOptions;
  /** Ack wait of consumers this collector creates: how long a message taken by a collector that died waits to be delivered again. Default: the server's (30 s). */
  ackWaitMs?: number;
}

export interface JetStreamIntake {
  /** The gateways this collector reads now. */
  holding(): string[];
  /** Stores and acknowledges what was taken, gives fleet leases back. */
  close(): Promise<void>;
}

/** One message taken off the bus, and what became of it. */
interface Taken {
  msg: JsMsg;
  /** The record seq it was stored as; 'drop' (a copy, or not the gateway's); 'held' (waiting for its predecessors). */
  fate: number | 'drop' | 'held';
}

/** Orders one gateway's messages into its chain and acknowledges them once stored. */
export class GatewayIntake {
  private expectedSeq: number;
  private expectedHash: Uint8Array;
  /** The gateway's records repeat their short strings: one interning decoder per gateway (bulk-decode.ts). */
  private readonly decoder = new BulkDecoder();
  /** Messages ahead of the chain, by record seq. */
  private readonly held = new Map<number, { taken: Taken; bytes: Uint8Array; rec: ReceivedRecord['rec'] }[]>();
  /** Every message not yet acknowledged, in delivery order: ack-all of one acknowledges those before it. */
  private readonly pending: Taken[] = [];
  private stored = -1;

  constructor(
    private readonly gatewayId: string,
    private readonly stream: AttachedStream,
    private readonly maxHeld: number,
    private readonly logger: Logger,
  ) {
    this.expectedSeq = stream.nextSeq;
    this.expectedHash = stream.lastHash;
  }

  take(msg: JsMsg): void {
    const taken: Taken = { msg, fate: 'drop' };
    this.pending.push(taken);
    let rec;
    try {
      rec = this.decoder.decodeBytes(msg.data);
    } catch {
      rec = undefined;
    }
    const seq = rec === undefined ? NaN : Number(rec.seq);
    if (rec === undefined || rec.gatewayId !== this.gatewayId || !(seq >= 0)) {
      this.foreign(msg, 'is not a record of this gateway');
    } else if (seq < this.expectedSeq) {
      // A copy of a stored record (a redelivery, a resend): nothing to do.
    } else if (seq > this.expectedSeq) {
      taken.fate = 'held';
      const list = this.held.get(seq) ?? [];
      list.push({ taken, bytes: msg.data, rec });
      this.held.set(seq, list);
      if (this.held.size > this.maxHeld) {
        this.stream.alert({ kind: 'gap', message: `record ${this.expectedSeq} never came on the bus; ${this.held.size} later records are waiting for it`, expectedSeq: this.expectedSeq, gotSeq: seq });
      }
    } else {
      const out: ReceivedRecord[] = [];
      this.chain(taken, msg.data, rec, out);
      // Records that were waiting for this one.
      for (let next = this.held.get(this.expectedSeq); next !== undefined; next = this.held.get(this.expectedSeq)) {
        this.held.delete(this.expectedSeq);
        const before = this.expectedSeq;
        for (const c of next) {
          if (this.expectedSeq === before) this.chain(c.taken, c.bytes, c.rec, out);
          else c.taken.fate = 'drop';
        }
        if (this.expectedSeq === before) break;
      }
      if (out.length > 0) this.stream.push(out);
    }
    this.settle();
  }

  /** Stored up to `lastSeq` (fsynced): acknowledge every message settled by then. */
  acked(lastSeq: number): void {
    this.stored = lastSeq;
    this.settle();
  }

  private chain(taken: Taken, bytes: Uint8Array, rec: ReceivedRecord['rec'], out: ReceivedRecord[]): void {
    if (!hashEquals(rec.prevHash, this.expectedHash)) {
      taken.fate = 'drop';
      this.foreign(taken.msg, `claims seq ${Number(rec.seq)} but does not chain to the stored record before it`);
      return;
    }
    taken.fate = Number(rec.seq);
    this.expectedHash = leafHash(bytes);
    out.push({ bytes, rec, hash: this.expectedHash });
    this.expectedSeq++;
  }

  private settle(): void {
    let last: JsMsg | undefined;
    while (this.pending.length > 0) {
      const f = this.pending[0]!.fate;
      if (f === 'held' || (typeof f === 'number' && f > this.stored)) break;
      last = this.pending.shift()!.msg;
    }
    last?.ack();
  }

  private foreign(msg: JsMsg, what: string): void {
    this.logger.warn({ gatewayId: this.gatewayId, streamSeq: msg.info.streamSequence }, 'collector: a message on the gateway subject is not its record');
    this.stream.alert({ kind: 'sink_alert', message: `message ${msg.info.streamSequence} on ${msg.subject} ${what}: dropped` });
  }
}

export async function startJetStreamIntake(opts: JetStreamIntakeOptions): Promise<JetStreamIntake> {
  const logger = opts.logger ?? silentLogger;
  const stream = opts.stream ?? 'PLANTGATE_AUDIT';
  const prefix = opts.subjectPrefix ?? 'plantgate.audit';
  let authenticator: Authenticator | undefined;
  if (opts.auth?.credsFile !== undefined) authenticator = credsAuthenticator(readFileSync(opts.auth.credsFile));
  else if (opts.auth?.nkeySeedFile !== undefined) authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileSync(opts.auth.nkeySeedFile, 'utf8').trim()));
  const nc: NatsConnection = await connect({
    servers: opts.servers,
    name: 'plantgate-collector',
    maxReconnectAttempts: -1,
    ...(authenticator !== undefined ? { authenticator } : {}),
    ...(opts.tls !== undefined ? { tls: { ca: String(opts.tls.ca), ...(opts.tls.cert !== undefined ? { cert: String(opts.tls.cert), key: String(opts.tls.key) } : {}) } } : {}),
  });
  const jsm = await nc.jetstreamManager();
  const js = nc.jetstream();
  const running = new Map<string, { messages: ConsumerMessages; done: Promise<void>; attached: AttachedStream; handover: Handover | undefined }>();

  /** Reads one gateway through its durable consumer, from where this collector (or the fleet) stored it. */
  const start = async (gatewayId: string, handedOver?: GatewayState, handover?: Handover): Promise<void> => {
    const durable = `${opts.consumerPrefix ?? 'plantgate-collector'}-${gatewayId.replace(/\./g, '_')}`;
    const found = await jsm.consumers.info(stream, durable).catch(() => undefined);
    if (found === undefined) {
      await jsm.consumers.add(stream, {
        durable_name: durable, filter_subject: `${prefix}.*.${gatewayId}`, ack_policy: AckPolicy.All, deliver_policy: DeliverPolicy.All, max_ack_pending: 20_000,
        ...(opts.ackWaitMs !== undefined ? { ack_wait: nanos(opts.ackWaitMs) } : {}),
      });
    }
    let intake: GatewayIntake | undefined;
    let messages: ConsumerMessages | undefined;
    const attached = await opts.collector.attach(gatewayId, `nats:${stream}/${durable}`, {
      // In a fleet the state goes to the fleet's bucket before the bus is acknowledged (fleet.ts).
      acked: (lastSeq, state) => (handover !== undefined ? handover.stored(state, () => intake?.acked(lastSeq)) : intake?.acked(lastSeq)),
      // The gateway is not on the line: cosignatures stay in the collector's checkpoint file.
      cosigned: () => undefined,
      resume: () => undefined,
      close: () => void messages?.close(),
    }, handedOver);
    intake = new GatewayIntake(gatewayId, attached, opts.maxHeld ?? 10_000, logger);
    const consumer = await js.consumers.get(stream, durable);
    messages = await consumer.consume({ max_messages: 1024 });
    const own = messages;
    const reader = intake;
    const done = (async () => {
      for await (const m of own) {
        if (attached.dead) break;
        reader.take(m);
      }
    })().catch((err: unknown) => logger.error({ gatewayId, err: (err as Error).message }, 'collector: JetStream consumer stopped'));
    running.set(gatewayId, { messages: own, done, attached, handover });
    logger.info({ gatewayId, stream, consumer: durable, nextSeq: attached.nextSeq }, 'collector: reading the gateway from JetStream');
  };

  /** Stops reading one gateway; `graceful`: what was taken is stored and acknowledged before it is let go. */
  const stop = async (gatewayId: string, graceful: boolean): Promise<void> => {
    const r = running.get(gatewayId);
    running.delete(gatewayId);
    if (r !== undefined) {
      await r.messages.close();
      if (graceful) {
        await r.done;
        await r.attached.drained();
        await r.handover?.flushed();
      }
    }
    // Also after a take that failed half-way (attached, not yet reading).
    await opts.collector.release(gatewayId);
  };

  let fleet: FleetMembership | undefined;
  try {
    if (opts.fleet !== undefined) {
      fleet = await FleetMembership.join(js, opts.gateways, { take: start, drop: stop }, opts.fleet, logger);
    } else {
      for (const gatewayId of opts.gateways) await start(gatewayId);
    }
  } catch (err) {
    await nc.close();
    throw err;
  }
  return {
    holding: () => [...running.keys()],
    async close() {
      if (fleet !== undefined) await fleet.close();
      for (const id of [...running.keys()]) await stop(id, true);
      await nc.close();
    },
  };
}
