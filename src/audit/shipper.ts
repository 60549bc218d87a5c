// Ships the spool to `plantgate collector`: mutual TLS, hello, resume from the collector's
// next_seq, stream records as they become durable, hand cumulative acks to the log, reconnect with
// exponential backoff after any error. Owns the client socket and nothing on disk.
// Never skips a record: if the collector wants a seq the spool no longer has, or claims records the
// gateway never wrote, that is an alert and nothing is sent.
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { silentLogger, type Logger } from '../core/log.js';
import { encodeRecordFrames, FrameReader } from './framing.js';
import { hashEquals, toHex } from './hash.js';
import { entryLeafHash, type AuditLog, type LogEntry } from './log.js';
import { num, pb } from './schema.js';
import { parseCheckpointBody, parseCosignerVerifierKey, type CosignatureVerifier } from './checkpoint.js';
import { parseNote } from './note.js';

export const STREAM_VERSION = 1;

export interface ShipperOptions {
  log: AuditLog;
  host: string;
  port: number;
  tls: { ca: string | Buffer; cert: string | Buffer; key: string | Buffer; servername?: string };
  gatewayId: string;
  logger?: Logger;
  reconnect?: { minMs: number; maxMs: number };
  /** Records read and written per socket write. Default 1024. */
  batchRecords?: number;
  /** Records sent but not yet acknowledged before the shipper waits for an ack. Default 16384. */
  windowRecords?: number;
  /**
   * Witnesses whose cosignatures are kept (tlog-cosignature/v1 verifier keys). Absent: a cosignature
   * is kept when it names the tree size and root of one of our checkpoints (the SOC verifies it).
   */
  witnessKeys?: string[];
}

export interface ShipperStats {
  connected: boolean;
  /** Last seq written to the socket, -1 before any. */
  sentSeq: number;
  /** Last seq the collector acknowledged on this or an earlier connection, -1 before any. */
  ackedSeq: number;
  connects: number;
  failures: number;
  lastError: string;
}

export interface ShipperAlert {
  kind: 'collector_wants_deleted_records' | 'collector_ahead_of_gateway' | 'collector_chain_differs' | 'bad_ack' | 'bad_cosignature';
  message: string;
  nextSeq?: number;
}

/** Emits 'connected' (nextSeq), 'acked' (seq), 'cosigned' (tree size, line), 'alert' (ShipperAlert), 'disconnected' (error message). */
export class Shipper extends EventEmitter {
  private socket: tls.TLSSocket | undefined;
  private reader = new FrameReader();
  private cursor = -1;
  private remoteAcked = -1;
  private streaming = false;
  private pumping = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private readonly unsubscribe: () => void;
  private readonly witnesses: CosignatureVerifier[];
  private cosignChain: Promise<void> = Promise.resolve();
  private readonly logger: Logger;
  private readonly minMs: number;
  private readonly maxMs: number;
  private readonly st: ShipperStats = { connected: false, sentSeq: -1, ackedSeq: -1, connects: 0, failures: 0, lastError: '' };

  constructor(private readonly opts: ShipperOptions) {
    super();
    this.logger = (opts.logger ?? silentLogger).child({ component: 'audit-shipper', collector: `${opts.host}:${opts.port}` });
    this.minMs = opts.reconnect?.minMs ?? 250;
    this.maxMs = opts.reconnect?.maxMs ?? 30_000;
    this.st.ackedSeq = opts.log.ackedSeq;
    this.witnesses = (opts.witnessKeys ?? []).map((k) => parseCosignerVerifierKey(k));
    // Woken by the log after each durable batch: no polling.
    this.unsubscribe = opts.log.subscribe(() => this.kick());
    this.connect();
  }

  stats(): ShipperStats {
    return { ...this.st };
  }

  private connect(): void {
    if (this.closed) return;
    const { host, port } = this.opts;
    const t = this.opts.tls;
    const socket = tls.connect({
      host,
      port,
      ca: t.ca,
      cert: t.cert,
      key: t.key,
      // SNI must not be an IP address (RFC 6066 §3); the certificate check still uses `host`.
      servername: t.servername ?? (isIP(host) ? undefined : host),
      minVersion: 'TLSv1.2',
    });
    this.socket = socket;
    this.reader = new FrameReader();
    this.streaming = false;
    socket.setNoDelay(true);
    socket.on('secureConnect', () => {
      this.st.connects++;
      socket.write(pb.ShipperFrame.encodeDelimited({ hello: { streamVersion: STREAM_VERSION, gatewayId: this.opts.gatewayId } }).finish());
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const f of this.reader.push(chunk)) this.onFrame(socket, pb.CollectorFrame.decode(f));
      } catch (err) {
        this.drop(socket, `bad frame from collector: ${(err as Error).message}`);
      }
    });
    socket.on('drain', () => this.kick());
    socket.on('error', (err) => this.drop(socket, err.message));
    socket.on('close', () => this.drop(socket, 'connection closed'));
  }

  private onFrame(socket: tls.TLSSocket, frame: InstanceType<typeof pb.CollectorFrame>): void {
    if (socket !== this.socket) return;
    if (frame.hello) {
      if (this.streaming) throw new Error('second hello on one stream');
      void this.onHello(socket, num(frame.hello.nextSeq), frame.hello.lastHash ?? new Uint8Array(0)).catch((err) =>
        this.drop(socket, (err as Error).message),
      );
    } else if (frame.ack) {
      const seq = num(frame.ack.lastSeq);
      if (!this.streaming || seq >= this.cursor || seq < this.remoteAcked) {
        this.alert(socket, { kind: 'bad_ack', message: `collector acknowledged seq ${seq}; sent up to ${this.cursor - 1}` });
        return;
      }
      this.remoteAcked = seq;
      this.st.ackedSeq = Math.max(this.st.ackedSeq, seq);
      this.opts.log.markAcked(seq).then(
        () => this.emit('acked', seq),
        (err) => this.logger.error({ err, seq }, 'audit spool: could not record acknowledgement'),
      );
      this.kick();
    } else if (frame.cosignature) {
      const c = frame.cosignature;
      const size = num(c.treeSize);
      const root = c.rootHash ?? new Uint8Array(0);
      const line = c.line ?? '';
      // Stored one after another: each rewrites the checkpoint's note file.
      this.cosignChain = this.cosignChain.then(() => this.storeCosignature(size, root, line)).catch((err) =>
        this.logger.error({ err: (err as Error).message, size }, 'audit shipper: could not store a cosignature'),
      );
    }
  }

  /** Keeps a witness's cosignature next to our checkpoint, once it is shown to be for that checkpoint. */
  private async storeCosignature(size: number, root: Uint8Array, line: string): Promise<void> {
    const note = await this.opts.log.checkpointNote(size);
    let body: string | undefined;
    if (note !== undefined) {
      try {
        const text = parseNote(note).text;
        if (hashEquals(parseCheckpointBody(text).root, root)) body = text;
      } catch {
        body = undefined;
      }
    }
    let ok = body !== undefined && /^\u2014 \S+ [A-Za-z0-9+/=]+\n?$/.test(line);
    if (ok && this.witnesses.length > 0) ok = this.witnesses.some((w) => w.verify(body!, line) !== undefined);
    if (!ok) {
      const alert: ShipperAlert = { kind: 'bad_cosignature', message: `collector sent a cosignature that is not for our checkpoint of size ${size}` };
      this.logger.error(alert, 'audit shipper: cosignature refused');
      this.emit('alert', alert);
      return;
    }
    await this.opts.log.storeCosignature(size, line.endsWith('\n') ? line : `${line}\n`);
    this.emit('cosigned', size, line);
  }

  private async onHello(socket: tls.TLSSocket, nextSeq: number, lastHash: Uint8Array): Promise<void> {
    const log = this.opts.log;
    if (nextSeq > log.durableSeq) {
      this.alert(socket, {
        kind: 'collector_ahead_of_gateway',
        nextSeq,
        message: `collector expects seq ${nextSeq} but this gateway's spool ends at ${log.durableSeq - 1}: was the spool replaced?`,
      });
      return;
    }
    if (nextSeq < log.firstSeq) {
      this.alert(socket, {
        kind: 'collector_wants_deleted_records',
        nextSeq,
        message: `collector asks for seq ${nextSeq} but records before ${log.firstSeq} were deleted after an earlier acknowledgement`,
      });
      return;
    }
    if (nextSeq > 0 && nextSeq - 1 >= log.firstSeq) {
      const [prev] = await log.readFrom(nextSeq - 1, 1);
      if (!hashEquals(lastHash, entryLeafHash(prev))) {
        this.alert(socket, {
          kind: 'collector_chain_differs',
          nextSeq,
          message: `collector's hash of seq ${nextSeq - 1} is ${toHex(lastHash)}, the spool's is ${toHex(entryLeafHash(prev))}`,
        });
        return;
      }
    }
    if (socket !== this.socket) return;
    // The collector already stored everything before nextSeq, maybe acked on a connection that
    // died before the ack arrived: record that now.
    if (nextSeq - 1 > log.ackedSeq) await log.markAcked(nextSeq - 1);
    this.remoteAcked = nextSeq - 1;
    this.st.ackedSeq = Math.max(this.st.ackedSeq, nextSeq - 1);
    this.cursor = nextSeq;
    this.streaming = true;
    this.attempt = 0;
    this.st.connected = true;
    this.logger.info({ nextSeq }, 'audit shipper connected');
    this.emit('connected', nextSeq);
    await this.askCosignatures(socket, nextSeq);
    this.kick();
  }

  /**
   * Checkpoints whose records the collector already stored and whose cosignature never came back
   * (a crash or an outage in between): asked again, before any record (docs/audit.md, Crash evidence).
   */
  private async askCosignatures(socket: tls.TLSSocket, nextSeq: number): Promise<void> {
    const frames: Uint8Array[] = [];
    for (const size of this.opts.log.uncosignedCheckpoints()) {
      if (size >= nextSeq) break;
      const note = await this.opts.log.checkpointNote(size);
      if (note !== undefined) frames.push(pb.ShipperFrame.encodeDelimited({ cosignRequest: { note } }).finish());
    }
    if (frames.length > 0 && socket === this.socket && !socket.destroyed) socket.write(Buffer.concat(frames));
  }

  private kick(): void {
    if (this.pumping || !this.streaming || this.closed) return;
    this.pumping = true;
    this.pump().then(
      () => {
        this.pumping = false;
      },
      (err) => {
        this.pumping = false;
        if (this.socket) this.drop(this.socket, (err as Error).message);
      },
    );
  }

  private async pump(): Promise<void> {
    const batch = this.opts.batchRecords ?? 1024;
    const window = this.opts.windowRecords ?? 16384;
    const log = this.opts.log;
    for (;;) {
      const socket = this.socket;
      if (!socket || !this.streaming || this.closed) return;
      if (socket.writableNeedDrain) return; // resumed by 'drain'
      if (this.cursor >= log.durableSeq) return; // resumed by the log's notification
      if (this.cursor - this.remoteAcked > window) return; // resumed by the next ack
      // Recent records leave as the stored bytes, framed in one buffer and one TLS write.
      const fast = log.readFramesFrom(this.cursor, batch);
      if (fast) {
        socket.write(fast.bytes);
        this.cursor += fast.count;
        this.st.sentSeq = this.cursor - 1;
        continue;
      }
      const recs = await log.readFrom(this.cursor, batch);
      if (socket !== this.socket || !this.streaming) return;
      if (recs.length === 0) return;
      socket.write(encodeEntries(recs));
      this.cursor = recs[recs.length - 1].seq + 1;
      this.st.sentSeq = this.cursor - 1;
    }
  }

  private alert(socket: tls.TLSSocket, alert: ShipperAlert): void {
    this.logger.error(alert, 'audit shipper: collector and spool disagree; not sending');
    this.emit('alert', alert);
    this.drop(socket, alert.message);
  }

  private drop(socket: tls.TLSSocket, reason: string): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    this.streaming = false;
    this.st.connected = false;
    this.st.failures++;
    this.st.lastError = reason;
    socket.destroy();
    this.emit('disconnected', reason);
    if (this.closed) return;
    const delay = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 20));
    this.attempt++;
    this.logger.warn({ reason, retryInMs: delay }, 'audit shipper disconnected');
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.connect();
    }, delay);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    if (this.timer) clearTimeout(this.timer);
    // Cosignatures already received are stored before the gateway goes on to close its log.
    await this.cosignChain;
    const socket = this.socket;
    this.socket = undefined;
    this.streaming = false;
    this.st.connected = false;
    if (socket && !socket.destroyed) {
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.destroy();
      });
    }
  }
}

/**
 * The stream bytes for a run of durable entries: records as ShipperFrame { record }, a lost record
 * (docs/audit.md, Recovery) as ShipperFrame { lost: { seq, leaf hash } }.
 */
function encodeEntries(entries: LogEntry[]): Buffer {
  const out: Buffer[] = [];
  let records: Uint8Array[] = [];
  for (const e of entries) {
    if (e.lost === undefined) {
      records.push(e.bytes);
      continue;
    }
    if (records.length > 0) out.push(encodeRecordFrames(records));
    records = [];
    out.push(Buffer.from(pb.ShipperFrame.encodeDelimited({ lost: { seq: e.seq, leafHash: e.lost } }).finish()));
  }
  if (records.length > 0) out.push(encodeRecordFrames(records));
  return out.length === 1 ? out[0] : Buffer.concat(out);
}

export function startShipper(opts: ShipperOptions): Shipper {
  return new Shipper(opts);
}
