// Ships the spool to NATS JetStream, for fleets (docs/audit.md, "Fleets: NATS JetStream": an existing streaming engine, not a
// home-made cluster). Same contract as the TLS shipper: records go out in seq order as they become
// durable, exactly the bytes that were hashed; a JetStream publish ack (the stream stored it) is
// the acknowledgement, handed to the log as a cumulative markAcked over the contiguous prefix of
// acks; after any error or restart it resumes from what the stream already holds.
// Subject `<prefix>.<site>.<gateway id>`; each message carries `Nats-Msg-Id: <gateway id>:<seq>`,
// so JetStream drops a resent record inside the stream's duplicate window, and `Plantgate-Seq`.
// On (re)start it reads the last message on its subject: a later seq than the spool has, or a
// different record at that seq, is an alert and nothing is sent (the stream holds another history).
// Owns the NATS connection only; never deletes anything itself (the log does, after markAcked).
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import {
  connect,
  headers,
  nanos,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  type PubAck,
} from 'nats';
import { silentLogger, type Logger } from '../core/log.js';
import { hashEquals, leafHash, toHex } from './hash.js';
import { entryLeafHash, type AuditLog } from './log.js';

export interface NatsSinkOptions {
  log: AuditLog;
  gatewayId: string;
  /** Site name: the subject token between the prefix and the gateway id. */
  site: string;
  servers: string[];
  /** JetStream stream that captures `<subjectPrefix>.>`. Default PLANTGATE_AUDIT. */
  stream?: string;
  /** Default `plantgate.audit`. */
  subjectPrefix?: string;
  /** Create the stream (file storage, 2 min duplicate window) when it does not exist. Default false. */
  createStream?: boolean;
  /** Mutual TLS to the NATS servers (PEM contents or file paths). */
  tls?: { ca: string | Buffer; cert: string | Buffer; key: string | Buffer };
  logger?: Logger;
  reconnect?: { minMs: number; maxMs: number };
  /** Records published and not yet acknowledged at most. Default 1024. */
  windowRecords?: number;
  /** Records read from the log per step. Default 256. */
  batchRecords?: number;
  /** How long to wait for one publish ack. Default 5 s. */
  ackTimeoutMs?: number;
}

export interface NatsSinkAlert {
  kind: 'stream_ahead_of_gateway' | 'stream_chain_differs' | 'stream_wants_deleted_records';
  message: string;
}

export interface NatsSinkStats {
  connected: boolean;
  sentSeq: number;
  ackedSeq: number;
  duplicates: number;
  failures: number;
  lastError: string;
}

export class NatsSinkError extends Error {
  override readonly name = 'NatsSinkError';
}

const TOKEN = /^[A-Za-z0-9_-]+$/;
const SEQ_HEADER = 'Plantgate-Seq';
const LOST_HEADER = 'Plantgate-Lost';

/** The subject a gateway's records go to. Site and gateway id must be single subject tokens. */
export function natsSubject(prefix: string, site: string, gatewayId: string): string {
  if (!TOKEN.test(site)) throw new NatsSinkError(`site "${site}" must be letters, digits, "_" or "-" (one NATS subject token)`);
  if (!TOKEN.test(gatewayId)) throw new NatsSinkError(`gateway id "${gatewayId}" must be letters, digits, "_" or "-" to be a NATS subject token`);
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix)) throw new NatsSinkError(`subject prefix "${prefix}" is not a NATS subject`);
  return `${prefix}.${site}.${gatewayId}`;
}

export function natsMsgId(gatewayId: string, seq: number): string {
  return `${gatewayId}:${seq}`;
}

/** Emits 'connected' (next seq), 'acked' (seq), 'alert' (NatsSinkAlert), 'disconnected' (reason). */
export class NatsSink extends EventEmitter {
  readonly subject: string;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private cursor = -1;
  private contiguous = -1;
  private readonly acked = new Set<number>();
  private inflight = 0;
  private streaming = false;
  private pumping = false;
  private closed = false;
  private generation = 0;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: () => void;
  private readonly logger: Logger;
  private readonly st: NatsSinkStats = { connected: false, sentSeq: -1, ackedSeq: -1, duplicates: 0, failures: 0, lastError: '' };

  constructor(private readonly opts: NatsSinkOptions) {
    super();
    this.subject = natsSubject(opts.subjectPrefix ?? 'plantgate.audit', opts.site, opts.gatewayId);
    this.logger = (opts.logger ?? silentLogger).child({ component: 'audit-nats', subject: this.subject });
    this.st.ackedSeq = opts.log.ackedSeq;
    this.unsubscribe = opts.log.subscribe(() => this.kick());
    void this.start();
  }

  stats(): NatsSinkStats {
    return { ...this.st };
  }

  private get streamName(): string {
    return this.opts.stream ?? 'PLANTGATE_AUDIT';
  }

  private async start(): Promise<void> {
    const gen = ++this.generation;
    try {
      if (!this.nc || this.nc.isClosed()) {
        const t = this.opts.tls;
        const pem = (v: string | Buffer): string => (Buffer.isBuffer(v) ? v.toString('utf8') : v.includes('-----BEGIN') ? v : readFileSync(v, 'utf8'));
        this.nc = await connect({
          servers: this.opts.servers,
          name: `plantgate-${this.opts.gatewayId}`,
          maxReconnectAttempts: -1,
          reconnectTimeWait: this.opts.reconnect?.minMs ?? 250,
          ...(t ? { tls: { ca: pem(t.ca), cert: pem(t.cert), key: pem(t.key) } } : {}),
        });
        const nc = this.nc;
        void (async () => {
          for await (const s of nc.status()) {
            if (s.type === 'disconnect' && this.streaming) this.fail(this.generation, `NATS disconnected: ${String(s.data)}`);
          }
        })().catch(() => undefined);
      }
      if (gen !== this.generation || this.closed) return;
      const jsm = await this.nc.jetstreamManager({ timeout: this.opts.ackTimeoutMs ?? 5000 });
      await this.ensureStream(jsm);
      this.js = this.nc.jetstream({ timeout: this.opts.ackTimeoutMs ?? 5000 });
      const next = await this.resumePoint(jsm);
      if (next === undefined || gen !== this.generation || this.closed) return;
      this.cursor = next;
      this.contiguous = next - 1;
      this.acked.clear();
      this.inflight = 0;
      this.streaming = true;
      this.attempt = 0;
      this.st.connected = true;
      this.logger.info({ nextSeq: next }, 'audit NATS sink streaming');
      this.emit('connected', next);
      this.kick();
    } catch (err) {
      this.fail(gen, (err as Error).message);
    }
  }

  private async ensureStream(jsm: JetStreamManager): Promise<void> {
    try {
      await jsm.streams.info(this.streamName);
    } catch (err) {
      if (!this.opts.createStream) throw new NatsSinkError(`JetStream stream ${this.streamName}: ${(err as Error).message}`);
      await jsm.streams.add({
        name: this.streamName,
        subjects: [`${this.opts.subjectPrefix ?? 'plantgate.audit'}.>`],
        storage: StorageType.File,
        duplicate_window: nanos(120_000),
      });
    }
  }

  /** The first seq the stream does not hold, after checking its last record is ours; undefined after an alert. */
  private async resumePoint(jsm: JetStreamManager): Promise<number | undefined> {
    const log = this.opts.log;
    let lastSeq = -1;
    let lastData: Uint8Array | undefined;
    try {
      const m = await jsm.streams.getMessage(this.streamName, { last_by_subj: this.subject });
      const h = m.header.get(SEQ_HEADER);
      lastSeq = /^\d+$/.test(h) ? Number(h) : -1;
      lastData = m.data;
    } catch (err) {
      // 404: nothing on our subject yet. Any other error is a failure (retried).
      if (!/no message found|not found|404/i.test((err as Error).message)) throw err;
    }
    if (lastSeq >= log.durableSeq) {
      this.alert({ kind: 'stream_ahead_of_gateway', message: `stream ${this.streamName} holds seq ${lastSeq} on ${this.subject} but this gateway's spool ends at ${log.durableSeq - 1}: was the spool replaced?` });
      return undefined;
    }
    if (lastSeq >= 0 && lastSeq >= log.firstSeq) {
      const [rec] = await log.readFrom(lastSeq, 1);
      if (!lastData || !hashEquals(leafHash(lastData), entryLeafHash(rec))) {
        this.alert({ kind: 'stream_chain_differs', message: `the stream's record ${lastSeq} (${toHex(lastData ? leafHash(lastData) : undefined)}) is not the spool's (${toHex(entryLeafHash(rec))})` });
        return undefined;
      }
    }
    const next = Math.max(lastSeq + 1, log.ackedSeq + 1);
    if (next < log.firstSeq) {
      this.alert({ kind: 'stream_wants_deleted_records', message: `the stream ends at seq ${lastSeq} but records before ${log.firstSeq} were deleted after an earlier acknowledgement` });
      return undefined;
    }
    if (lastSeq > log.ackedSeq) {
      await log.markAcked(lastSeq);
      this.st.ackedSeq = Math.max(this.st.ackedSeq, lastSeq);
    }
    return next;
  }

  private kick(): void {
    if (this.pumping || !this.streaming || this.closed) return;
    this.pumping = true;
    const gen = this.generation;
    this.pump(gen).then(
      () => {
        this.pumping = false;
      },
      (err) => {
        this.pumping = false;
        this.fail(gen, (err as Error).message);
      },
    );
  }

  private async pump(gen: number): Promise<void> {
    const log = this.opts.log;
    const window = this.opts.windowRecords ?? 1024;
    const batch = this.opts.batchRecords ?? 256;
    while (this.streaming && gen === this.generation && !this.closed && this.cursor < log.durableSeq && this.inflight < window) {
      const recs = await log.readFrom(this.cursor, Math.min(batch, window - this.inflight));
      if (recs.length === 0 || gen !== this.generation || !this.streaming) return;
      for (const r of recs) {
        const h = headers();
        h.set(SEQ_HEADER, String(r.seq));
        // A lost record (docs/audit.md, Recovery): an empty body and its leaf hash in a header.
        if (r.lost) h.set(LOST_HEADER, toHex(r.lost));
        this.inflight++;
        this.js!.publish(this.subject, r.bytes, { msgID: natsMsgId(this.opts.gatewayId, r.seq), headers: h, timeout: this.opts.ackTimeoutMs ?? 5000 }).then(
          (ack) => this.onAck(gen, r.seq, ack),
          (err: Error) => this.fail(gen, `publish of seq ${r.seq}: ${err.message}`),
        );
      }
      this.cursor = recs[recs.length - 1].seq + 1;
      this.st.sentSeq = this.cursor - 1;
    }
  }

  private onAck(gen: number, seq: number, ack: PubAck): void {
    if (gen !== this.generation) return;
    this.inflight--;
    if (ack.duplicate) this.st.duplicates++;
    this.acked.add(seq);
    let advanced = false;
    while (this.acked.delete(this.contiguous + 1)) {
      this.contiguous++;
      advanced = true;
    }
    if (advanced) {
      const upTo = this.contiguous;
      this.st.ackedSeq = Math.max(this.st.ackedSeq, upTo);
      this.opts.log.markAcked(upTo).then(
        () => this.emit('acked', upTo),
        (err) => this.logger.error({ err: (err as Error).message, seq: upTo }, 'audit spool: could not record acknowledgement'),
      );
    }
    this.kick();
  }

  private alert(a: NatsSinkAlert): void {
    this.logger.error(a, 'audit NATS sink: stream and spool disagree; not sending');
    this.emit('alert', a);
    this.fail(this.generation, a.message);
  }

  /** Stops this streaming generation and resumes from the stream's state after a backoff. */
  private fail(gen: number, reason: string): void {
    if (gen !== this.generation || this.closed || this.timer) return;
    this.generation++;
    const wasStreaming = this.streaming;
    this.streaming = false;
    this.st.connected = false;
    this.st.failures++;
    this.st.lastError = reason;
    if (wasStreaming) this.emit('disconnected', reason);
    const min = this.opts.reconnect?.minMs ?? 250;
    const delay = Math.min(this.opts.reconnect?.maxMs ?? 30_000, min * 2 ** Math.min(this.attempt++, 20));
    this.logger.warn({ reason, retryInMs: delay }, 'audit NATS sink: will resume');
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.start();
    }, delay);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.streaming = false;
    this.unsubscribe();
    if (this.timer) clearTimeout(this.timer);
    const nc = this.nc;
    this.nc = undefined;
    if (nc && !nc.isClosed()) {
      // Publishes already sent get their acks (and markAcked) before the connection goes.
      await nc.flush().catch(() => undefined);
      this.generation++;
      await nc.close().catch(() => undefined);
    }
    this.generation++;
  }
}

export function startNatsSink(opts: NatsSinkOptions): NatsSink {
  return new NatsSink(opts);
}
