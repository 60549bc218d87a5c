// The SOC side of the audit stream: a mutual-TLS server that receives each gateway's records,
// verifies the chain (seq contiguous, prev_hash = previous leaf hash), appends every verified
// record to <out>/<gateway>.ndjson with fsync, persists the resume point, then acknowledges.
// Never acknowledges a record before it is fsynced, and never writes past a gap or fork: it alerts
// (alerts.ndjson + error log + 'alert' event) and closes the stream instead.
import { EventEmitter } from 'node:events';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { silentLogger, type Logger } from '../core/log.js';
import { FrameReader } from '../audit/framing.js';
import { hashEquals, leafHash, toHex } from '../audit/hash.js';
import { decodeRecord, pb, SCHEMA_VERSION } from '../audit/schema.js';
import { recordToJson } from './ndjson.js';
import { ndjsonPath, openNdjson, readState, statePath, writeState, type ResumePoint } from './state.js';

export interface CollectorOptions {
  host: string;
  port: number;
  tls: { ca: string | Buffer; cert: string | Buffer; key: string | Buffer };
  outDir: string;
  logger?: Logger;
  /** How long a new connection may take to say hello. Default 10 s. */
  helloTimeoutMs?: number;
}

export type AlertKind = 'gap' | 'replay' | 'fork' | 'malformed' | 'gateway_mismatch' | 'protocol';

export interface CollectorAlert {
  time: string;
  kind: AlertKind;
  gatewayId: string;
  remote: string;
  message: string;
  expectedSeq?: number;
  gotSeq?: number;
  expectedPrevHash?: string;
  gotPrevHash?: string;
}

const GATEWAY_ID = /^[A-Za-z0-9._-]{1,128}$/;
/** Frames held per connection before the socket is paused (backpressure, bounded memory). */
const MAX_QUEUED = 4096;

interface Gateway {
  id: string;
  point: ResumePoint;
  ndjson: FileHandle;
  statePath: string;
  conn: Connection | undefined;
}

interface Connection {
  socket: tls.TLSSocket;
  remote: string;
  gateway: Gateway | undefined;
  queue: Uint8Array[];
  processing: Promise<void> | undefined;
  dead: boolean;
}

/** Emits 'record' (gatewayId, jsonRecord) after each record is stored, and 'alert' (CollectorAlert). */
export class Collector extends EventEmitter {
  port = 0;
  private server: tls.Server;
  private readonly gateways = new Map<string, Promise<Gateway>>();
  private readonly conns = new Set<Connection>();
  private alerts: FileHandle | undefined;
  private alertChain: Promise<void> = Promise.resolve();
  private readonly logger: Logger;

  constructor(private readonly opts: CollectorOptions) {
    super();
    this.logger = (opts.logger ?? silentLogger).child({ component: 'collector' });
    this.server = tls.createServer(
      {
        ca: opts.tls.ca,
        cert: opts.tls.cert,
        key: opts.tls.key,
        // Only gateways holding a certificate from our CA may write audit history.
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
      },
      (socket) => this.onConnection(socket),
    );
    this.server.on('tlsClientError', (err, socket) => {
      this.logger.warn({ err: err.message, remote: `${socket.remoteAddress}:${socket.remotePort}` }, 'collector: TLS handshake refused');
    });
  }

  async listen(): Promise<void> {
    await mkdir(this.opts.outDir, { recursive: true });
    this.alerts = await open(join(this.opts.outDir, 'alerts.ndjson'), 'a');
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
    this.logger.info({ host: this.opts.host, port: this.port, outDir: this.opts.outDir }, 'collector listening');
  }

  private onConnection(socket: tls.TLSSocket): void {
    const conn: Connection = {
      socket,
      remote: `${socket.remoteAddress}:${socket.remotePort}`,
      gateway: undefined,
      queue: [],
      processing: undefined,
      dead: false,
    };
    this.conns.add(conn);
    const reader = new FrameReader();
    const helloTimer = setTimeout(() => this.kill(conn, 'no hello in time'), this.opts.helloTimeoutMs ?? 10_000);
    let helloSeen = false;
    socket.on('data', (chunk: Buffer) => {
      if (conn.dead) return;
      let frames: Uint8Array[];
      try {
        frames = reader.push(chunk);
      } catch (err) {
        void this.alert(conn, { kind: 'protocol', message: (err as Error).message });
        return;
      }
      for (const f of frames) {
        if (!helloSeen) {
          helloSeen = true;
          clearTimeout(helloTimer);
          void this.onHello(conn, f).catch((err) => {
            this.logger.error({ err, remote: conn.remote }, 'collector: cannot open gateway state');
            this.kill(conn, (err as Error).message);
          });
          continue;
        }
        conn.queue.push(f);
      }
      if (conn.queue.length > MAX_QUEUED) socket.pause();
      this.process(conn);
    });
    socket.on('error', (err) => this.kill(conn, err.message));
    socket.on('close', () => {
      clearTimeout(helloTimer);
      this.kill(conn, 'closed');
      this.conns.delete(conn);
    });
  }

  private async onHello(conn: Connection, bytes: Uint8Array): Promise<void> {
    let hello;
    try {
      hello = pb.ShipperFrame.decode(bytes).hello;
    } catch {
      hello = undefined;
    }
    if (!hello) return this.alert(conn, { kind: 'protocol', message: 'first frame is not a hello' });
    const id = hello.gatewayId ?? '';
    if (!GATEWAY_ID.test(id)) return this.alert(conn, { kind: 'protocol', message: `gateway id "${id.slice(0, 64)}" is not valid` });
    const gw = await this.gateway(id);
    if (conn.dead) return;
    const previous = gw.conn;
    if (previous && previous !== conn) {
      // One stream per gateway: a reconnecting gateway replaces its half-dead old connection,
      // after the old one has finished storing what it already received.
      this.kill(previous, 'replaced by a new connection from the same gateway');
      await previous.processing;
    }
    if (conn.dead) return;
    gw.conn = conn;
    conn.gateway = gw;
    this.logger.info({ gatewayId: id, remote: conn.remote, nextSeq: gw.point.nextSeq }, 'collector: gateway connected');
    conn.socket.write(pb.CollectorFrame.encodeDelimited({ hello: { nextSeq: gw.point.nextSeq, lastHash: gw.point.lastHash } }).finish());
    this.process(conn);
  }

  private gateway(id: string): Promise<Gateway> {
    let p = this.gateways.get(id);
    if (!p) {
      p = (async () => {
        const sp = statePath(this.opts.outDir, id);
        const state = await readState(sp);
        const { handle, last } = await openNdjson(ndjsonPath(this.opts.outDir, id));
        // The NDJSON is fsynced before the state file is replaced: if they disagree, the NDJSON
        // is ahead and is right.
        const point = last && last.nextSeq > state.nextSeq ? last : state;
        return { id, point, ndjson: handle, statePath: sp, conn: undefined };
      })();
      this.gateways.set(id, p);
      p.catch(() => this.gateways.delete(id));
    }
    return p;
  }

  private process(conn: Connection): void {
    if (conn.processing || !conn.gateway || conn.dead) return;
    conn.processing = this.drain(conn).finally(() => {
      conn.processing = undefined;
      if (conn.queue.length > 0 && !conn.dead) this.process(conn);
    });
  }

  /** Verifies and stores everything queued, in batches: one write + one fsync + one ack each. */
  private async drain(conn: Connection): Promise<void> {
    const gw = conn.gateway!;
    while (conn.queue.length > 0 && !conn.dead) {
      const frames = conn.queue;
      conn.queue = [];
      if (conn.socket.isPaused()) conn.socket.resume();
      const lines: string[] = [];
      const stored: Record<string, unknown>[] = [];
      let point = gw.point;
      let problem: Omit<CollectorAlert, 'time' | 'gatewayId' | 'remote'> | undefined;
      for (const f of frames) {
        let bytes: Uint8Array | undefined;
        let rec;
        try {
          bytes = pb.ShipperFrame.decode(f).record ?? undefined;
          if (bytes) rec = decodeRecord(bytes);
        } catch {
          rec = undefined;
        }
        if (!bytes || !rec) {
          problem = { kind: 'malformed', message: 'frame is not an audit record', expectedSeq: point.nextSeq };
          break;
        }
        if (rec.gatewayId !== gw.id) {
          problem = { kind: 'gateway_mismatch', message: `record names gateway "${rec.gatewayId}" on ${gw.id}'s stream`, gotSeq: rec.seq };
          break;
        }
        if (rec.seq !== point.nextSeq) {
          problem = {
            kind: rec.seq > point.nextSeq ? 'gap' : 'replay',
            message: rec.seq > point.nextSeq ? `records ${point.nextSeq}..${rec.seq - 1} are missing` : `seq ${rec.seq} was already stored`,
            expectedSeq: point.nextSeq,
            gotSeq: rec.seq,
          };
          break;
        }
        if (!hashEquals(rec.prevHash, point.lastHash)) {
          problem = {
            kind: 'fork',
            message: `record ${rec.seq} does not chain to the stored record ${rec.seq - 1}`,
            expectedSeq: point.nextSeq,
            gotSeq: rec.seq,
            expectedPrevHash: toHex(point.lastHash),
            gotPrevHash: toHex(rec.prevHash),
          };
          break;
        }
        if ((rec.schemaVersion ?? 0) > SCHEMA_VERSION) {
          this.logger.warn({ gatewayId: gw.id, seq: rec.seq, schemaVersion: rec.schemaVersion }, 'collector: newer record schema');
        }
        const hash = leafHash(bytes);
        const json = recordToJson(rec, hash);
        lines.push(JSON.stringify(json));
        stored.push(json);
        point = { nextSeq: rec.seq + 1, lastHash: hash };
      }
      if (lines.length > 0) {
        await gw.ndjson.write(lines.join('\n') + '\n');
        await gw.ndjson.sync();
        await writeState(gw.statePath, point);
        gw.point = point;
        if (!conn.dead) conn.socket.write(pb.CollectorFrame.encodeDelimited({ ack: { lastSeq: point.nextSeq - 1 } }).finish());
        for (const json of stored) this.emit('record', gw.id, json);
      }
      if (problem) {
        await this.alert(conn, problem);
        return;
      }
    }
  }

  private async alert(conn: Connection, a: Omit<CollectorAlert, 'time' | 'gatewayId' | 'remote'>): Promise<void> {
    const alert: CollectorAlert = { time: new Date().toISOString(), gatewayId: conn.gateway?.id ?? '', remote: conn.remote, ...a };
    this.kill(conn, a.message);
    this.logger.error(alert, 'collector: audit stream rejected');
    const write = this.alertChain.then(async () => {
      if (!this.alerts) return;
      await this.alerts.write(JSON.stringify(alert) + '\n');
      await this.alerts.sync();
    });
    this.alertChain = write.catch((err) => this.logger.error({ err }, 'collector: cannot write alerts.ndjson'));
    await this.alertChain;
    this.emit('alert', alert);
  }

  private kill(conn: Connection, reason: string): void {
    if (conn.dead) return;
    conn.dead = true;
    conn.queue = [];
    if (conn.gateway?.conn === conn) conn.gateway.conn = undefined;
    this.logger.debug({ remote: conn.remote, reason }, 'collector: stream closed');
    conn.socket.destroy();
  }

  /** Stops accepting, closes every stream after its current batch, closes files. */
  async close(): Promise<void> {
    const closing = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const pending: Promise<void>[] = [];
    for (const c of this.conns) {
      this.kill(c, 'collector shutting down');
      if (c.processing) pending.push(c.processing);
    }
    await Promise.allSettled(pending);
    await closing;
    await this.alertChain;
    for (const p of this.gateways.values()) {
      const gw = await p.catch(() => undefined);
      await gw?.ndjson.close();
    }
    this.gateways.clear();
    await this.alerts?.close();
    this.alerts = undefined;
  }
}

export async function startCollector(opts: CollectorOptions): Promise<Collector> {
  const c = new Collector(opts);
  await c.listen();
  return c;
}
