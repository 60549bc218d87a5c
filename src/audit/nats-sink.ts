// Ships the spool to NATS JetStream, for fleets (docs/audit.md, "Fleets: NATS JetStream": an existing streaming engine, not a
// home-made cluster). Same contract as the TLS shipper: records go out in seq order as they become
// durable, exactly the bytes that were hashed; a JetStream publish ack (the stream stored it) is
// the acknowledgement, handed to the log as a cumulative markAcked over the contiguous prefix of
// acks; after any error or restart it resumes from what the stream already holds.
// Subject `<prefix>.<site>.<gateway id>`; each message carries `Nats-Msg-Id: <gateway id>:<seq>`,
// so JetStream drops a resent record inside the stream's duplicate window, and `Plantgate-Seq`.
// The bus is not trusted (docs/audit.md, "A hostile bus"): whoever can publish on the subject can
// put anything there. A message on it that is not this gateway's own record (checked against the
// spool by leaf hash) never stops shipping: it is an alert, written into the log itself as a
// SinkAlertEvent (so the SOC reads it in the same verified chain), and shipping goes on after the
// last genuine record. A foreign message squatting on the Nats-Msg-Id of a record yet to be sent
// (JetStream would drop ours as its duplicate) is caught at the duplicate ack and ours is published
// again under a msg id of its own.
// Owns the NATS connection only; never deletes anything itself (the log does, after markAcked).
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  headers,
  nanos,
  nkeyAuthenticator,
  StorageType,
  type Authenticator,
  type Msg,
  type MsgHdrs,
  type Subscription,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  type PubAck,
} from 'nats';
import { silentLogger, type Logger } from '../core/log.js';
import { fromHex, hashEquals, leafHash, toHex } from './hash.js';
import { entryLeafHash, type AuditLog } from './log.js';
import { sinkAlertRecord } from './records.js';

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
  /** TLS to the NATS servers (PEM contents or file paths); cert and key for mutual TLS. */
  tls?: { ca: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  /** NATS credentials: a .creds file (user JWT + nkey seed, NATS accounts) or an nkey seed file. Read once at start, never logged. */
  auth?: { credsFile?: string; nkeySeedFile?: string };
  logger?: Logger;
  reconnect?: { minMs: number; maxMs: number };
  /** Records published and not yet acknowledged at most. Default 1024. */
  windowRecords?: number;
  /** Records read from the log per step. Default 256. */
  batchRecords?: number;
  /**
   * At most one SinkAlertEvent record per this many ms; foreign messages in between are counted into
   * the next one (a flood on the bus must not fill the spool). Default 1000.
   */
  alertRecordEveryMs?: number;
  /** How long to wait for one publish ack. Default 5 s. */
  ackTimeoutMs?: number;
}

export interface NatsSinkAlert {
  /**
   * foreign_message: a message on this gateway's subject that is not its record (shipping goes on);
   * msg_id_taken: a foreign message held the Nats-Msg-Id of a record, which was published again under
   * another id; stream_wants_deleted_records: the stream lacks records the spool already deleted (halts).
   */
  kind: 'foreign_message' | 'msg_id_taken' | 'stream_wants_deleted_records';
  message: string;
  /** The stream's sequence of the message, when known. */
  streamSeq?: number;
  /** Its Plantgate-Seq header, as sent. */
  claimedSeq?: string;
  /** Hex leaf hash of its body. */
  bodyHash?: string;
}

export interface NatsSinkStats {
  connected: boolean;
  /** An alert stopped shipping (stream_wants_deleted_records) and it has not resumed since. */
  halted: boolean;
  /** Foreign messages and taken msg ids seen. */
  alerts: number;
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
  /** Msg ids published by this process whose message has not come back on the subscription yet, with their leaf hash. */
  private readonly mine = new Map<string, string>();
  /** Stream seqs already alerted (a foreign message is reported once per process). */
  private readonly reported = new Set<number>();
  private watch: Subscription | undefined;
  /** While set, foreign messages are counted, not recorded one by one. */
  private alertTimer: NodeJS.Timeout | undefined;
  private suppressed: { count: number; kinds: Set<string> } = { count: 0, kinds: new Set() };
  private readonly logger: Logger;
  private readonly st: NatsSinkStats = { connected: false, halted: false, alerts: 0, sentSeq: -1, ackedSeq: -1, duplicates: 0, failures: 0, lastError: '' };

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

  private authenticator(): { authenticator?: Authenticator } {
    const a = this.opts.auth;
    if (a?.credsFile) return { authenticator: credsAuthenticator(new Uint8Array(readFileSync(a.credsFile))) };
    if (a?.nkeySeedFile) return { authenticator: nkeyAuthenticator(new TextEncoder().encode(readFileSync(a.nkeySeedFile, 'utf8').trim())) };
    return {};
  }

  /** A message seen on our subject: ours (published by this process) or foreign. */
  private observe(m: Msg): void {
    const id = m.headers?.get('Nats-Msg-Id') ?? '';
    const hash = toHex(messageHash(m.headers, m.data));
    if (this.mine.get(id) === hash) {
      this.mine.delete(id);
      return;
    }
    this.foreign({ claimedSeq: m.headers?.get(SEQ_HEADER) ?? '', bodyHash: hash, detail: `a message on ${this.subject} (Nats-Msg-Id "${id.slice(0, 80)}") that this gateway did not publish` });
  }

  /**
   * Reports a message on our subject that is not our record: the 'alert' event (the gateway counts
   * it in a metric) for each, and an audit record and a log line for the first, then at most one per
   * alertRecordEveryMs summing up the ones in between.
   */
  private foreign(a: { streamSeq?: number; claimedSeq?: string; bodyHash?: string; detail: string }, kind: NatsSinkAlert['kind'] = 'foreign_message'): void {
    if (a.streamSeq !== undefined) {
      if (this.reported.has(a.streamSeq)) return;
      if (this.reported.size >= 4096) this.reported.clear();
      this.reported.add(a.streamSeq);
    }
    this.st.alerts++;
    const alert: NatsSinkAlert = { kind, message: a.detail, ...a };
    this.emit('alert', alert);
    if (this.alertTimer) {
      this.suppressed.count++;
      this.suppressed.kinds.add(kind);
      return;
    }
    this.recordAlert(kind, a);
    const every = this.opts.alertRecordEveryMs ?? 1000;
    const tick = (): void => {
      const { count, kinds } = this.suppressed;
      if (count === 0 || this.closed) {
        this.alertTimer = undefined;
        return;
      }
      this.suppressed = { count: 0, kinds: new Set() };
      this.recordAlert(kinds.size === 1 ? ([...kinds][0] as NatsSinkAlert['kind']) : 'foreign_message', {
        detail: `${count} more messages on ${this.subject} that this gateway did not write (${[...kinds].join(', ')}) within ${every} ms`,
      });
      this.alertTimer = setTimeout(tick, every);
    };
    this.alertTimer = setTimeout(tick, every);
  }

  private recordAlert(kind: NatsSinkAlert['kind'], a: { streamSeq?: number; claimedSeq?: string; bodyHash?: string; detail: string }): void {
    this.logger.error({ kind, ...a }, "audit NATS sink: a message on the subject is not this gateway's record; shipping goes on");
    try {
      this.opts.log.append(sinkAlertRecord({ sink: 'nats', kind, subject: this.subject, ...a }));
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'audit NATS sink: could not record the alert');
    }
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
          ...(t ? { tls: { ca: pem(t.ca), ...(t.cert ? { cert: pem(t.cert) } : {}), ...(t.key ? { key: pem(t.key) } : {}) } } : {}),
          ...this.authenticator(),
        });
        const nc = this.nc;
        void (async () => {
          for await (const s of nc.status()) {
            if (s.type === 'disconnect' && this.streaming) this.fail(this.generation, `NATS disconnected: ${String(s.data)}`);
          }
        })().catch(() => undefined);
        // Everything published on our subject, by anyone, while we are connected.
        this.watch = nc.subscribe(this.subject, { callback: (err, m) => err || this.observe(m) });
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
      this.st.halted = false;
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

  /**
   * The first seq the stream does not hold. Its last message on our subject moves the resume point
   * only when it is our record (same leaf hash as the spool's at its seq); anything else there is
   * foreign: alerted, and shipping resumes after the last acknowledged record (a resend inside the
   * duplicate window is dropped by JetStream, after it the consumer sees the same record twice).
   */
  private async resumePoint(jsm: JetStreamManager): Promise<number | undefined> {
    const log = this.opts.log;
    let next = log.ackedSeq + 1;
    let m: StoredMsgLike | undefined;
    try {
      m = await jsm.streams.getMessage(this.streamName, { last_by_subj: this.subject });
    } catch (err) {
      // 404: nothing on our subject yet. Any other error is a failure (retried).
      if (!/no message found|not found|404/i.test((err as Error).message)) throw err;
    }
    if (m) {
      const h = m.header.get(SEQ_HEADER);
      const lastSeq = /^\d+$/.test(h) ? Number(h) : -1;
      const hash = messageHash(m.header, m.data);
      if (lastSeq >= log.firstSeq && lastSeq < log.durableSeq) {
        const [rec] = await log.readFrom(lastSeq, 1);
        if (hashEquals(hash, entryLeafHash(rec))) {
          next = Math.max(next, lastSeq + 1);
          if (lastSeq > log.ackedSeq) {
            await log.markAcked(lastSeq);
            this.st.ackedSeq = Math.max(this.st.ackedSeq, lastSeq);
          }
        } else {
          this.foreign({ streamSeq: m.seq, claimedSeq: h, bodyHash: toHex(hash), detail: `the stream's last message on ${this.subject} (stream seq ${m.seq}) claims seq ${lastSeq} but is not the spool's record ${lastSeq}` });
        }
      } else if (!(lastSeq >= 0 && lastSeq <= log.ackedSeq)) {
        // (A seq at or below the acknowledged point whose record was deleted cannot be compared: it is taken as ours.)
        this.foreign({ streamSeq: m.seq, claimedSeq: h, bodyHash: toHex(hash), detail: `the stream's last message on ${this.subject} (stream seq ${m.seq}) claims seq "${h.slice(0, 40)}", which this gateway never wrote (its spool ends at ${log.durableSeq - 1})` });
      }
    }
    if (next < log.firstSeq) {
      this.halt({ kind: 'stream_wants_deleted_records', message: `the stream needs seq ${next} but records before ${log.firstSeq} were deleted after an earlier acknowledgement` });
      return undefined;
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
        this.publish(gen, r.seq, r.bytes, h, entryLeafHash(r), natsMsgId(this.opts.gatewayId, r.seq));
      }
      this.cursor = recs[recs.length - 1].seq + 1;
      this.st.sentSeq = this.cursor - 1;
    }
  }

  private publish(gen: number, seq: number, body: Uint8Array, h: MsgHdrs, leaf: Uint8Array, msgID: string): void {
    this.remember(msgID, toHex(leaf));
    this.js!.publish(this.subject, body, { msgID, headers: h, timeout: this.opts.ackTimeoutMs ?? 5000 }).then(
      (ack) => (ack.duplicate ? this.checkDuplicate(gen, seq, body, h, leaf, ack) : this.onAck(gen, seq, ack)),
      (err: Error) => this.fail(gen, `publish of seq ${seq}: ${err.message}`),
    );
  }

  private remember(msgID: string, hash: string): void {
    this.mine.set(msgID, hash);
    // Bounded: an entry stays only until its message comes back on the subscription.
    const cap = 4 * (this.opts.windowRecords ?? 1024);
    for (const k of this.mine.keys()) {
      if (this.mine.size <= cap) break;
      this.mine.delete(k);
    }
  }

  /**
   * JetStream dropped a publish as a duplicate of its msg id: it counts only when the message the
   * stream holds under that id is this record. Otherwise someone else took the id first; the record
   * goes out again under an id of its own.
   */
  private checkDuplicate(gen: number, seq: number, body: Uint8Array, h: MsgHdrs, leaf: Uint8Array, ack: PubAck): void {
    void (async () => {
      const jsm = await this.nc!.jetstreamManager({ timeout: this.opts.ackTimeoutMs ?? 5000 });
      const held = await jsm.streams.getMessage(this.streamName, { seq: ack.seq });
      const hash = messageHash(held.header, held.data);
      if (gen !== this.generation) return;
      if (hashEquals(hash, leaf)) return this.onAck(gen, seq, ack);
      this.foreign(
        { streamSeq: ack.seq, claimedSeq: held.header.get(SEQ_HEADER), bodyHash: toHex(hash), detail: `stream seq ${ack.seq} holds a message under this gateway's Nats-Msg-Id for seq ${seq} that is not its record; the record was published again as ${natsMsgId(this.opts.gatewayId, seq)}:${ack.seq}` },
        'msg_id_taken',
      );
      this.publish(gen, seq, body, h, leaf, `${natsMsgId(this.opts.gatewayId, seq)}:${ack.seq}`);
    })().catch((err: Error) => this.fail(gen, `checking the duplicate of seq ${seq}: ${err.message}`));
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

  /** Stops shipping until a later attempt finds a way on (readiness shows it: stats().halted). */
  private halt(a: NatsSinkAlert): void {
    this.logger.error(a, 'audit NATS sink: stream and spool disagree; not sending');
    this.st.halted = true;
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
    if (this.alertTimer) clearTimeout(this.alertTimer);
    // Foreign messages counted since the last alert record are recorded before the log closes.
    const { count, kinds } = this.suppressed;
    if (count > 0) this.recordAlert('foreign_message', { detail: `${count} more messages on ${this.subject} that this gateway did not write (${[...kinds].join(', ')})` });
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

type StoredMsgLike = { seq: number; header: MsgHdrs; data: Uint8Array };

/** A message's leaf hash: of its body, or, for a lost record (empty body), the one its header carries. */
function messageHash(h: MsgHdrs | undefined, data: Uint8Array): Uint8Array {
  const lost = h?.get(LOST_HEADER);
  if (data.length === 0 && lost && /^[0-9a-f]{64}$/.test(lost)) return fromHex(lost);
  return leafHash(data);
}

export function startNatsSink(opts: NatsSinkOptions): NatsSink {
  return new NatsSink(opts);
}
