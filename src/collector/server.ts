// The SOC side of the audit stream: a mutual-TLS server that receives each gateway's records,
// checks that the client certificate proves the gateway id the hello claims (identity.ts), verifies
// the chain (seq contiguous, prev_hash = previous leaf hash), recomputes the Merkle tree and checks
// every checkpoint against it (witness.ts), appends every verified record to the gateway's NDJSON
// (and OCSF) output with fsync, persists the resume point and tree, acknowledges, then returns a
// cosignature for each verified checkpoint. Never acknowledges a record before it is fsynced, and
// never writes past a gap, fork or bad checkpoint: it alerts (alerts.ndjson + error log + 'alert'
// event + a count in stats()) and closes the stream instead.
import { EventEmitter } from 'node:events';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { basename, join } from 'node:path';
import tls from 'node:tls';
import { systemClock, type Clock } from '../core/clock.js';
import { writeFileAtomic } from '../core/files.js';
import { silentLogger, type Logger } from '../core/log.js';
import { openCheckpoint, type Cosigner } from '../audit/checkpoint.js';
import { treeHash } from '../audit/merkle.js';
import { TreeStore } from '../audit/tree-store.js';
import { FrameReader } from '../audit/framing.js';
import { fromHex, hashEquals, leafHash, toHex } from '../audit/hash.js';
import { Frontier } from '../audit/merkle.js';
import { addSignatureLines, parseVerifierKey, type NoteVerifier } from '../audit/note.js';
import { BulkDecoder } from '../audit/bulk-decode.js';
import { num, pb, SCHEMA_VERSION, type DecodedRecord } from '../audit/schema.js';
import { boundName, certificateMatches, peerIdentity, type PeerIdentity } from './identity.js';
import { lostRecordJson, recordToJson } from './ndjson.js';
import { ndjsonLine } from './ndjson-text.js';
import { toOcsf } from './ocsf.js';
import { ocsfLine } from './ocsf-text.js';
import { GatewayOutput, type OutputEntry, type OutputLayout } from './output.js';
import { collectorTreeFile, readState, statePath, writeState, type GatewayState } from './state.js';
import { checkCheckpointRecord } from './witness.js';

export interface CollectorOptions {
  host: string;
  port: number;
  tls: { ca: string | Buffer; cert: string | Buffer; key: string | Buffer };
  outDir: string;
  logger?: Logger;
  /** How long a new connection may take to say hello. Default 10 s. */
  helloTimeoutMs?: number;
  /** Output files. Default one NDJSON file per gateway, no OCSF (the CLI config defaults to daily + OCSF). */
  output?: { layout?: OutputLayout; ocsf?: boolean };
  /**
   * Gateways allowed to write, with their checkpoint verifier keys and certificate identities.
   * Absent: open mode (any gateway certificate from the CA, bound to its id on first use;
   * checkpoints checked against the tree but not their signatures, and not cosigned).
   */
  gateways?: { id: string; verifierKey: string; identity?: string }[];
  /** Countersigns verified checkpoints of configured gateways. */
  witness?: Cosigner;
  /** Time of cosignatures. Default the system clock. */
  clock?: Clock;
}

export type AlertKind =
  | 'gap'
  | 'replay'
  | 'fork'
  | 'malformed'
  | 'gateway_mismatch'
  | 'protocol'
  | 'unknown_gateway'
  | 'identity_mismatch'
  | 'bad_signature'
  | 'inconsistent_checkpoint'
  // Notices: the stream goes on (the records saying so are stored and verified like any other).
  | 'audit_gap'
  | 'records_lost'
  | 'unclean_stop'
  | 'records_dropped'
  | 'sink_alert';

/** Alerts that report what a verified gateway record says, or a declared loss: stored, not fatal. */
const NOTICES: ReadonlySet<AlertKind> = new Set(['audit_gap', 'records_lost', 'unclean_stop', 'records_dropped', 'sink_alert']);

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
  expected?: string;
  actual?: string;
  /** Notices: the record that raised it. */
  seq?: number;
  /** Seqs [first, last] a notice is about (lost records). */
  first?: number;
  last?: number;
}

export interface CollectorStats {
  alerts: Partial<Record<AlertKind, number>>;
  records: number;
  cosignatures: number;
}

const GATEWAY_ID = /^[A-Za-z0-9._-]{1,128}$/;
/** Frames held per connection before the socket is paused (backpressure, bounded memory). */
const MAX_QUEUED = 4096;

interface Gateway {
  id: string;
  state: GatewayState;
  /** Time of the newest stored record: a lost record's line is filed at it (no time of its own). */
  lastTimeMs: number;
  /**
   * The tree's stored hashes, <out>/<gateway>.tree.hashes, in step with the state: the witness can
   * compute its root at any earlier size (a cosignature asked again) and `audit prove --collector`
   * proofs for records the gateway deleted. Undefined when it could not be rebuilt.
   */
  tree: TreeStore | undefined;
  out: GatewayOutput;
  statePath: string;
  conn: Connection | undefined;
  verifier: NoteVerifier | undefined;
}

/**
 * The far end of one gateway's stream, as the verify-and-store loop sees it: a gateway's mutual-TLS
 * connection, or its subject on a JetStream stream (jetstream.ts).
 */
export interface StreamLink {
  /** Every record up to `lastSeq` is stored (fsynced); `state` is the gateway's state file as written. */
  acked(lastSeq: number, state: GatewayState): void;
  /** The witness cosigned a verified checkpoint. */
  cosigned(c: { treeSize: number; rootHash: Uint8Array; line: string }): void;
  /** The queue was taken for storing: more may come. */
  resume(): void;
  close(): void;
}

/** A record already taken off a bus and decoded (its source checked seq and chain to order it). */
export interface ReceivedRecord {
  bytes: Uint8Array;
  rec: DecodedRecord;
  /** Its leaf hash, when the source already computed it to check the chain. */
  hash?: Uint8Array;
}

interface Connection {
  link: StreamLink;
  remote: string;
  gateway: Gateway | undefined;
  /** ShipperFrames from a TLS stream, or records from a bus. */
  queue: (Uint8Array | ReceivedRecord)[];
  processing: Promise<void> | undefined;
  dead: boolean;
}

/** What a record source other than the TLS listener gets from attach(). */
export interface AttachedStream {
  /** Where the stored stream ends: the next seq expected and the leaf hash it must chain to. */
  nextSeq: number;
  lastHash: Uint8Array;
  push(records: ReceivedRecord[]): void;
  /** A notice is stored and the stream goes on; any other alert ends the stream. */
  alert(a: Omit<CollectorAlert, 'time' | 'gatewayId' | 'remote'>): void;
  /** Resolves once everything pushed so far is stored (and acknowledged through the link), or the stream died. */
  drained(): Promise<void>;
  readonly dead: boolean;
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
  private readonly configured: Map<string, { verifier: NoteVerifier; identity?: string }> | undefined;
  private readonly clock: Clock;
  private readonly st: CollectorStats = { alerts: {}, records: 0, cosignatures: 0 };
  /** Records from every gateway decode through one reader: their short strings repeat (bulk-decode.ts). */
  private readonly decoder = new BulkDecoder();
  /** close() began: a stream that finishes its handshake after that is refused, not left open. */
  private closing = false;

  constructor(private readonly opts: CollectorOptions) {
    super();
    this.logger = (opts.logger ?? silentLogger).child({ component: 'collector' });
    this.clock = opts.clock ?? systemClock;
    if (opts.gateways) {
      this.configured = new Map();
      for (const g of opts.gateways) {
        if (this.configured.has(g.id)) throw new Error(`gateway "${g.id}" is configured twice`);
        this.configured.set(g.id, { verifier: parseVerifierKey(g.verifierKey), identity: g.identity });
      }
    } else {
      this.logger.warn('collector: no gateways configured: open mode (first certificate per gateway id is trusted; checkpoint signatures not checked)');
    }
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

  stats(): CollectorStats {
    return { alerts: { ...this.st.alerts }, records: this.st.records, cosignatures: this.st.cosignatures };
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
    if (this.closing) {
      socket.destroy();
      return;
    }
    const conn: Connection = {
      link: {
        acked: (lastSeq) => socket.write(pb.CollectorFrame.encodeDelimited({ ack: { lastSeq } }).finish()),
        cosigned: (cosignature) => socket.write(pb.CollectorFrame.encodeDelimited({ cosignature }).finish()),
        resume: () => {
          if (socket.isPaused()) socket.resume();
        },
        close: () => socket.destroy(),
      },
      remote: `${socket.remoteAddress}:${socket.remotePort}`,
      gateway: undefined,
      queue: [],
      processing: undefined,
      dead: false,
    };
    const peer = peerIdentity(socket);
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
          void this.onHello(conn, peer, socket, f).catch((err) => {
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

  private async onHello(conn: Connection, peer: PeerIdentity, socket: tls.TLSSocket, bytes: Uint8Array): Promise<void> {
    let hello;
    try {
      hello = pb.ShipperFrame.decode(bytes).hello;
    } catch {
      hello = undefined;
    }
    if (!hello) return this.alert(conn, { kind: 'protocol', message: 'first frame is not a hello' });
    const id = hello.gatewayId ?? '';
    if (!GATEWAY_ID.test(id)) return this.alert(conn, { kind: 'protocol', message: `gateway id "${id.slice(0, 64)}" is not valid` });
    const who = boundName(peer) ?? '(no identity)';
    let cfg: { verifier: NoteVerifier; identity?: string } | undefined;
    if (this.configured) {
      cfg = this.configured.get(id);
      if (!cfg) return this.alert(conn, { kind: 'unknown_gateway', message: `gateway "${id}" (certificate ${who}) is not in the collector's gateways list` });
      if (!certificateMatches(peer, id, cfg.identity)) {
        return this.alert(conn, {
          kind: 'identity_mismatch',
          message: `certificate ${who} does not prove gateway "${id}"`,
          expected: cfg.identity ?? `spiffe://<trust domain>/gateway/${id} or CN=${id}`,
          actual: who,
        });
      }
    }
    const gw = await this.gateway(id);
    if (conn.dead) return;
    if (!this.configured) {
      const name = boundName(peer);
      const bound = gw.state.certificateIdentity;
      if (name === undefined || (bound !== undefined && bound !== name)) {
        return this.alert(conn, { kind: 'identity_mismatch', message: `certificate ${who} does not prove gateway "${id}" (bound to ${bound ?? '?'} on first use)`, expected: bound, actual: who });
      }
      if (bound === undefined) {
        gw.state = { ...gw.state, certificateIdentity: name };
        await writeState(gw.statePath, gw.state);
        this.logger.warn({ gatewayId: id, certificate: name }, 'collector: gateway id bound to its first certificate (open mode)');
      }
    }
    if (!(await this.bind(conn, gw))) return;
    socket.write(pb.CollectorFrame.encodeDelimited({ hello: { nextSeq: gw.state.nextSeq, lastHash: gw.state.lastHash } }).finish());
    this.process(conn);
  }

  /**
   * Makes `conn` the one stream of `gw`: a reconnecting gateway replaces its half-dead old stream,
   * after the old one has finished storing what it already received. False when `conn` died meanwhile.
   */
  private async bind(conn: Connection, gw: Gateway): Promise<boolean> {
    if (conn.dead) return false;
    const previous = gw.conn;
    if (previous && previous !== conn) {
      this.kill(previous, 'replaced by a new stream of the same gateway');
      await previous.processing;
    }
    if (conn.dead) return false;
    gw.conn = conn;
    conn.gateway = gw;
    this.logger.info({ gatewayId: gw.id, remote: conn.remote, nextSeq: gw.state.nextSeq }, 'collector: gateway connected');
    return true;
  }

  /**
   * A configured gateway's records from another source than its TLS stream (docs/audit.md, Fleets:
   * the JetStream subject): verified and stored exactly like them. The source orders them (seq and
   * chain from `nextSeq` / `lastHash`) and gets acknowledgements through `link`. `handedOver`: the
   * state another collector of the fleet stored the gateway up to (docs/audit.md, Fleets); when this
   * collector's own copy is behind it, that copy is set aside and storing starts from there.
   */
  async attach(gatewayId: string, remote: string, link: StreamLink, handedOver?: GatewayState): Promise<AttachedStream> {
    if (this.closing) throw new Error('the collector is closing');
    if (this.configured !== undefined && !this.configured.has(gatewayId)) throw new Error(`gateway "${gatewayId}" is not in the collector's gateways list`);
    const conn: Connection = {
      link: {
        ...link,
        close: () => {
          this.conns.delete(conn);
          link.close();
        },
      },
      remote, gateway: undefined, queue: [], processing: undefined, dead: false,
    };
    this.conns.add(conn);
    let gw = await this.gateway(gatewayId, handedOver);
    if (handedOver !== undefined && gw.state.nextSeq < handedOver.nextSeq) {
      // Loaded before the hand-over (a TLS stream of the same gateway): reload from the hand-over.
      await this.release(gatewayId);
      gw = await this.gateway(gatewayId, handedOver);
    }
    if (!(await this.bind(conn, gw))) throw new Error(`the stream of gateway "${gatewayId}" closed while it was opened`);
    return {
      nextSeq: gw.state.nextSeq,
      lastHash: gw.state.lastHash,
      push: (records) => {
        if (conn.dead) return;
        for (const r of records) conn.queue.push(r);
        this.process(conn);
      },
      alert: (a) => void this.alert(conn, a),
      drained: async () => {
        while (conn.processing !== undefined) await conn.processing;
      },
      get dead() {
        return conn.dead;
      },
    };
  }

  private gateway(id: string, handedOver?: GatewayState): Promise<Gateway> {
    let p = this.gateways.get(id);
    if (!p) {
      p = (async () => {
        const sp = statePath(this.opts.outDir, id);
        const layout = this.opts.output?.layout ?? 'single';
        const ocsf = this.opts.output?.ocsf ?? false;
        let out = await GatewayOutput.open(this.opts.outDir, id, layout, ocsf);
        try {
          let saved = await readState(sp);
          const logger = this.logger.child({ gatewayId: id });
          let state = await recoverGateway(out, saved, logger);
          if (handedOver !== undefined && state.nextSeq < handedOver.nextSeq) {
            // Another collector stored the records after this one's copy: that copy stays whole,
            // set aside, and this collector's new copy begins where the other one's ended.
            await out.close();
            const aside = await this.setAside(id, out, state);
            if (aside !== undefined) logger.warn({ setAside: aside, firstSeq: state.firstSeq, nextSeq: state.nextSeq, from: handedOver.nextSeq }, 'collector: own copy of the gateway was behind the fleet; set aside');
            out = await GatewayOutput.open(this.opts.outDir, id, layout, ocsf);
            saved = { ...handedOver, firstSeq: handedOver.nextSeq };
            await writeState(sp, saved);
            state = saved;
          }
          const last = await out.last('ndjson');
          const lastTimeMs = typeof last?.json.timeUnixMs === 'number' ? last.json.timeUnixMs : this.clock.now();
          // The tree store holds a tree from seq 0: a copy that begins mid-stream keeps only the frontier.
          const tree = state.frontier && state.firstSeq === 0 ? await openTree(this.opts.outDir, id, out, state, saved.nextSeq, logger) : undefined;
          return { id, state, lastTimeMs, tree, out, statePath: sp, conn: undefined, verifier: this.configured?.get(id)?.verifier };
        } catch (err) {
          await out.close();
          throw err;
        }
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
      conn.link.resume();
      const entries: OutputEntry[] = [];
      const stored: Record<string, unknown>[] = [];
      const listening = this.listenerCount('record') > 0;
      const cosigned: { size: number; root: Uint8Array; body: string; note: string }[] = [];
      let nextSeq = gw.state.nextSeq;
      let lastHash = gw.state.lastHash;
      // A working copy: the stored frontier only moves once the batch is durable.
      const frontier = gw.state.frontier?.clone();
      let checkpoint = gw.state.checkpoint;
      let problem: Omit<CollectorAlert, 'time' | 'gatewayId' | 'remote'> | undefined;
      const notices: Omit<CollectorAlert, 'time' | 'gatewayId' | 'remote'>[] = [];
      const treeHashes: Uint8Array[] = [];
      const requests: string[] = [];
      let timeMs = gw.lastTimeMs;
      for (const f of frames) {
        let bytes: Uint8Array | undefined;
        let rec;
        let lost;
        let knownHash: Uint8Array | undefined;
        if (!(f instanceof Uint8Array)) {
          bytes = f.bytes;
          rec = f.rec;
          knownHash = f.hash;
        } else {
          try {
            const frame = pb.ShipperFrame.decode(f);
            bytes = frame.record ?? undefined;
            lost = frame.lost ?? undefined;
            if (frame.cosignRequest && !bytes && !lost) {
              requests.push(frame.cosignRequest.note ?? '');
              continue;
            }
            if (bytes) rec = this.decoder.decodeBytes(bytes);
          } catch {
            rec = undefined;
          }
        }
        if (lost && !bytes) {
          // A record the gateway lost and declared (docs/audit.md, Recovery): only its leaf hash
          // keeps its place in the tree. Stored as such, and the SOC is told at once.
          const seq = num(lost.seq);
          const hash = lost.leafHash ?? new Uint8Array(0);
          if (seq !== nextSeq || hash.length !== 32) {
            problem = { kind: seq > nextSeq ? 'gap' : hash.length !== 32 ? 'malformed' : 'replay', message: `lost-record frame for seq ${seq}, expected ${nextSeq}`, expectedSeq: nextSeq, gotSeq: seq };
            break;
          }
          if (frontier) for (const h of frontier.append(hash)) treeHashes.push(h);
          const json = lostRecordJson(gw.id, seq, hash, timeMs);
          entries.push({ timeMs, ndjson: JSON.stringify(json) });
          stored.push(json);
          const prev = notices[notices.length - 1];
          if (prev?.kind === 'records_lost' && prev.last === seq - 1) {
            prev.last = seq;
            prev.message = `the gateway lost records ${prev.first}..${seq} (their leaf hashes keep their place in the tree); its AUDIT_GAP record names the cause`;
          } else {
            notices.push({ kind: 'records_lost', first: seq, last: seq, message: `the gateway lost record ${seq} (its leaf hash keeps its place in the tree); its AUDIT_GAP record names the cause` });
          }
          nextSeq = seq + 1;
          lastHash = hash;
          continue;
        }
        if (!bytes || !rec) {
          problem = { kind: 'malformed', message: 'frame is not an audit record', expectedSeq: nextSeq };
          break;
        }
        if (rec.gatewayId !== gw.id) {
          problem = { kind: 'gateway_mismatch', message: `record names gateway "${rec.gatewayId}" on ${gw.id}'s stream`, gotSeq: rec.seq };
          break;
        }
        if (rec.seq !== nextSeq) {
          problem = {
            kind: rec.seq > nextSeq ? 'gap' : 'replay',
            message: rec.seq > nextSeq ? `records ${nextSeq}..${rec.seq - 1} are missing` : `seq ${rec.seq} was already stored`,
            expectedSeq: nextSeq,
            gotSeq: rec.seq,
          };
          break;
        }
        if (!hashEquals(rec.prevHash, lastHash)) {
          problem = {
            kind: 'fork',
            message: `record ${rec.seq} does not chain to the stored record ${rec.seq - 1}`,
            expectedSeq: nextSeq,
            gotSeq: rec.seq,
            expectedPrevHash: toHex(lastHash),
            gotPrevHash: toHex(rec.prevHash),
          };
          break;
        }
        if (rec.checkpoint && frontier) {
          const v = checkCheckpointRecord(rec, frontier, gw.verifier);
          if ('problem' in v) {
            problem = { ...v.problem, gotSeq: rec.seq };
            break;
          }
          checkpoint = { size: v.ok.size, root: v.ok.root };
          if (v.signed) cosigned.push({ ...v.ok, note: rec.checkpoint.note ?? '' });
        }
        if ((rec.schemaVersion ?? 0) > SCHEMA_VERSION) {
          this.logger.warn({ gatewayId: gw.id, seq: rec.seq, schemaVersion: rec.schemaVersion }, 'collector: newer record schema');
        }
        const notice = noticeOf(rec);
        if (notice) notices.push(notice);
        const hash = knownHash ?? leafHash(bytes);
        if (frontier) for (const h of frontier.append(hash)) treeHashes.push(h);
        timeMs = Number(rec.timeUnixMs);
        // The lines are written from the record as text (ndjson-text.ts, ocsf-text.ts: the same
        // characters as the JSON mapping's); the record's JSON object only for 'record' listeners.
        const ocsf = gw.out.ocsf ? ocsfLine(rec, hash) : undefined;
        entries.push(ocsf ? { timeMs, ndjson: ndjsonLine(rec, hash), ocsf } : { timeMs, ndjson: ndjsonLine(rec, hash) });
        if (listening) stored.push(recordToJson(rec, hash));
        nextSeq = rec.seq + 1;
        lastHash = hash;
      }
      if (entries.length > 0) {
        await gw.out.append(entries);
        // The tree's hashes are on disk before the state that counts them.
        if (gw.tree && frontier) {
          await gw.tree.append(treeHashes);
          await gw.tree.sync();
        } else if (gw.tree) {
          await gw.tree.close();
          gw.tree = undefined;
        }
        const state: GatewayState = { ...gw.state, nextSeq, lastHash, frontier, checkpoint };
        await writeState(gw.statePath, state);
        gw.state = state;
        gw.lastTimeMs = timeMs;
        this.st.records += entries.length;
        if (!conn.dead) conn.link.acked(nextSeq - 1, state);
        for (const json of stored) this.emit('record', gw.id, json);
        if (this.opts.witness) await this.cosign(conn, gw, cosigned);
      }
      for (const n of notices) await this.alert(conn, n);
      for (const note of requests) {
        const p = this.cosignAgain(conn, gw, note);
        if (p) problem ??= p;
      }
      if (problem) {
        await this.alert(conn, problem);
        return;
      }
    }
  }

  /** Countersigns verified checkpoints, keeps the newest cosigned note, and returns the cosignatures. */
  private async cosign(conn: Connection, gw: Gateway, verified: { size: number; root: Uint8Array; body: string; note: string }[]): Promise<void> {
    const witness = this.opts.witness!;
    let newest: string | undefined;
    for (const v of verified) {
      const line = witness.cosign(v.body, Math.floor(this.clock.now() / 1000));
      newest = addSignatureLines(v.note, [line]);
      this.st.cosignatures++;
      if (!conn.dead) conn.link.cosigned({ treeSize: v.size, rootHash: v.root, line });
      this.emit('cosigned', gw.id, v.size, line);
    }
    // The SOC's copy of the newest witnessed checkpoint, with both signatures: what `plantgate
    // audit verify old.checkpoint new.checkpoint` and any signed-note tool take.
    if (newest !== undefined) await writeFileAtomic(gw.out.checkpointPath(), newest);
  }

  /**
   * A gateway asks again for the cosignature of a checkpoint whose record this collector already
   * stored (it lost the first one in a crash or an outage: docs/audit.md, Crash evidence). Cosigned
   * when its signature verifies and its root is the root of the tree of the records stored here;
   * a checkpoint that contradicts them is an inconsistent_checkpoint alert. Later ones are cosigned
   * when their records arrive; without a witness key or the tree, nothing is done.
   */
  private cosignAgain(conn: Connection, gw: Gateway, note: string): Omit<CollectorAlert, 'time' | 'gatewayId' | 'remote'> | undefined {
    const witness = this.opts.witness;
    if (!witness || !gw.verifier || !gw.tree) return undefined;
    let cp;
    try {
      cp = openCheckpoint(note, gw.verifier);
    } catch (err) {
      return { kind: 'bad_signature', message: `cosignature asked for a checkpoint that does not verify: ${(err as Error).message}` };
    }
    if (cp.size >= gw.state.nextSeq) return undefined;
    const root = gw.tree.withReader((read) => treeHash(cp.size, read));
    if (!hashEquals(root, cp.root)) {
      return { kind: 'inconsistent_checkpoint', message: `the gateway asks to cosign a checkpoint of size ${cp.size} whose root differs from the tree of the records stored here: history was rewritten`, expected: toHex(root), actual: toHex(cp.root) };
    }
    const line = witness.cosign(cp.body, Math.floor(this.clock.now() / 1000));
    this.st.cosignatures++;
    if (!conn.dead) conn.link.cosigned({ treeSize: cp.size, rootHash: cp.root, line });
    this.emit('cosigned', gw.id, cp.size, line);
    return undefined;
  }

  /** Records an alert; anything but a notice also closes the stream (nothing past it is stored). */
  private async alert(conn: Connection, a: Omit<CollectorAlert, 'time' | 'gatewayId' | 'remote'>): Promise<void> {
    const alert: CollectorAlert = { time: new Date().toISOString(), gatewayId: conn.gateway?.id ?? '', remote: conn.remote, ...a };
    this.st.alerts[a.kind] = (this.st.alerts[a.kind] ?? 0) + 1;
    if (NOTICES.has(a.kind)) {
      this.logger.error(alert, 'collector: the gateway reports a problem with its audit');
    } else {
      this.kill(conn, a.message);
      this.logger.error(alert, 'collector: audit stream rejected');
    }
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
    conn.link.close();
  }

  /**
   * Lets a gateway go (its fleet lease moved to another collector): its stream ends after the
   * current batch and its files are closed; attach() opens it afresh.
   */
  async release(gatewayId: string): Promise<void> {
    const p = this.gateways.get(gatewayId);
    if (p === undefined) return;
    const gw = await p.catch(() => undefined);
    if (gw?.conn) {
      const conn = gw.conn;
      this.kill(conn, 'the gateway moved to another collector');
      await conn.processing;
    }
    if (this.gateways.get(gatewayId) === p) this.gateways.delete(gatewayId);
    await gw?.out.close();
    await gw?.tree?.close();
  }

  /** Moves a gateway's files to <out>/earlier/<gateway>.<first>-<last>/; undefined when it had no record. */
  private async setAside(id: string, out: GatewayOutput, state: GatewayState): Promise<string | undefined> {
    const paths = [...out.ownPaths(), statePath(this.opts.outDir, id), join(this.opts.outDir, collectorTreeFile(id))];
    const present = (await Promise.all(paths.map((p) => stat(p).then(() => p, () => undefined)))).filter((p) => p !== undefined);
    if (present.length === 0) return undefined;
    if (state.nextSeq === state.firstSeq) {
      // No record in them: nothing to keep.
      for (const p of present) await rm(p, { recursive: true, force: true });
      return undefined;
    }
    const dir = join(this.opts.outDir, 'earlier', `${id}.${state.firstSeq}-${state.nextSeq - 1}`);
    await mkdir(dir, { recursive: true });
    for (const p of present) await rename(p, join(dir, basename(p)));
    return dir;
  }

  /** Stops accepting, closes every stream after its current batch, closes files. */
  async close(): Promise<void> {
    this.closing = true;
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
      await gw?.out.close();
      await gw?.tree?.close();
    }
    this.gateways.clear();
    await this.alerts?.close();
    this.alerts = undefined;
  }
}

const range = (a: number, b: number): string => (a === b ? `${a}` : `${a}..${b}`);

/** The notice a verified record raises: a gateway telling the SOC its audit lost or may lack something. */
function noticeOf(rec: DecodedRecord): Omit<CollectorAlert, 'time' | 'gatewayId' | 'remote'> | undefined {
  const seq = num(rec.seq);
  if (rec.auditGap) {
    const g = rec.auditGap;
    const [first, last] = [num(g.firstSeq), num(g.lastSeq)];
    const cp = num(g.lastCheckpointSize);
    const unknown = num(g.unknownHashes);
    return {
      kind: 'audit_gap',
      seq,
      first,
      last,
      message: `AUDIT_GAP: the gateway lost records ${range(first, last)}: ${g.cause ?? ''}` + (cp > 0 ? ` (last signed checkpoint: ${cp} records)` : '') + (unknown > 0 ? `; ${unknown} of their leaf hashes are unknown too (placeholders)` : ''),
    };
  }
  if (rec.restart) {
    const r = rec.restart;
    const unknown = (r.outcomeUnknown ?? []).map(num);
    const sessions = r.sessionsClosed ?? [];
    return {
      kind: 'unclean_stop',
      seq,
      message: `the gateway stopped uncleanly after seq ${num(r.lastSeq)}: ${unknown.length} write(s) decided and possibly executed with no recorded outcome` + (unknown.length ? ` (decision seqs ${unknown.join(', ')})` : '') + `; ${sessions.length} session(s) closed at restart`,
    };
  }
  if (rec.dropped) {
    const d = rec.dropped;
    return { kind: 'records_dropped', seq, message: `the gateway's spool was full: ${num(d.count)} record(s) dropped (${num(d.denials)} of them command denials), counted exactly` };
  }
  if (rec.sinkAlert) {
    const a = rec.sinkAlert;
    return { kind: 'sink_alert', seq, message: `the gateway's ${a.sink ?? ''} sink: ${a.kind ?? ''} on ${a.subject ?? ''}: ${a.detail ?? ''}` };
  }
  return undefined;
}

export async function startCollector(opts: CollectorOptions): Promise<Collector> {
  const c = new Collector(opts);
  await c.listen();
  return c;
}

async function openTree(outDir: string, id: string, out: GatewayOutput, state: GatewayState, savedNextSeq: number, logger: Logger): Promise<TreeStore | undefined> {
  try {
    const { store, frontier } = await TreeStore.open(
      outDir,
      state.nextSeq,
      0,
      async (from, to) => {
        const hashes: Uint8Array[] = [];
        for await (const line of out.linesFrom('ndjson', from)) {
          if (line.seq >= to) break;
          if (line.seq !== from + hashes.length) throw new Error(`the NDJSON lacks seq ${from + hashes.length}`);
          hashes.push(fromHex(line.hash));
        }
        return hashes;
      },
      // The state file is written after the tree file's fsync: hashes up to it are on disk.
      savedNextSeq,
      collectorTreeFile(id),
    );
    if (!hashEquals(frontier.root(), state.frontier!.root())) throw new Error('its root differs from the state file\'s tree');
    return store;
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'collector: cannot keep the tree hashes of this gateway; old checkpoints are not cosigned again and proofs need the NDJSON');
    return undefined;
  }
}

/**
 * Reconciles a gateway's state file with its output after a crash: the NDJSON is fsynced before
 * the state, so lines past the state's next_seq are stored records; the tree is advanced over their
 * `hash` fields (or rebuilt from seq 0 when the state predates the tree), and OCSF lines missing
 * for them are regenerated from the NDJSON, so neither output has a gap or a duplicate.
 */
async function recoverGateway(out: GatewayOutput, state: GatewayState, logger: Logger): Promise<GatewayState> {
  const last = await out.last('ndjson');
  const storedNext = last ? last.seq + 1 : 0;
  let { nextSeq, lastHash, frontier } = state;
  if (frontier === undefined || storedNext > nextSeq) {
    const from = frontier === undefined ? 0 : nextSeq;
    const f = frontier?.clone() ?? new Frontier();
    let expect = from;
    let rebuilt = true;
    for await (const line of out.linesFrom('ndjson', from)) {
      if (line.seq !== expect) {
        // The NDJSON does not hold every record from `from` on: the tree cannot be recomputed.
        logger.error({ from, expected: expect, found: line.seq }, 'collector: cannot rebuild the tree from the NDJSON; checkpoints of this gateway will not be witnessed');
        rebuilt = false;
        break;
      }
      f.append(fromHex(line.hash));
      expect++;
    }
    if (rebuilt && expect >= nextSeq) {
      frontier = f;
      if (expect > nextSeq) logger.warn({ stateNextSeq: nextSeq, ndjsonNextSeq: expect }, 'collector: output was ahead of the state file (crash); resuming from the output');
      nextSeq = expect;
      lastHash = last && last.seq + 1 === expect ? fromHex(last.hash) : lastHash;
    } else if (storedNext > nextSeq && last) {
      frontier = undefined;
      nextSeq = storedNext;
      lastHash = fromHex(last.hash);
    } else {
      frontier = rebuilt ? frontier : undefined;
    }
  }
  if (out.ocsf) {
    const ocsfLast = await out.last('ocsf');
    const from = Math.max(state.nextSeq, ocsfLast ? ocsfLast.seq + 1 : 0);
    const missing: OutputEntry[] = [];
    if (from < nextSeq) {
      for await (const line of out.linesFrom('ndjson', from)) {
        const o = toOcsf(line.json);
        if (o) missing.push({ timeMs: Number(line.json.timeUnixMs), ndjson: '', ocsf: JSON.stringify(o) });
      }
    }
    if (missing.length > 0) {
      await out.appendOcsfOnly(missing);
      logger.warn({ lines: missing.length }, 'collector: regenerated OCSF lines lost in a crash');
    }
  }
  return { ...state, nextSeq, lastHash, frontier };
}
