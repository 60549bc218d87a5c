// The audit log a gateway writes to: stamps each event with gateway id, seq, time and prev_hash,
// encodes it once, and group-commits it to the spool (one write + one fsync per batch).
// It must never hand out a seq it cannot make durable in order, and never report a record durable
// before its fsync returned. After any write or fsync failure it refuses all further appends
// (fail closed: the pipeline denies writes with AUDIT_UNAVAILABLE).
// Each record is also leaf `seq` of an RFC 9162 Merkle tree: the frontier is advanced at append
// time (O(log n)), the new stored hashes are fsynced to tree.hashes with the record's batch, and every
// N records or T milliseconds a signed checkpoint of the tree so far is appended as a record and,
// once durable, written to checkpoints/<size>.checkpoint (where a witness's cosignature joins it).
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../core/clock.js';
import { writeFileAtomic } from '../core/files.js';
import { silentLogger, type Logger } from '../core/log.js';
import { AuditError } from './errors.js';
import { signCheckpoint } from './checkpoint.js';
import { leafHash } from './hash.js';
import type { Frontier } from './merkle.js';
import { addSignatureLines, parseNote, type NoteSigner } from './note.js';
import { DigestArena } from './digest-arena.js';
import { FrameArena, forEachRecord } from './frame-arena.js';
import { RecordRing } from './record-ring.js';
import { RecordEncoder, type RecordStamp } from './record-encoder.js';
import { droppedRecord, restartRecord, type AuditEvent } from './records.js';
import { SCHEMA_VERSION } from './schema.js';
import { CHECKPOINT_DIR, checkpointFileName, readEvidence } from './evidence.js';
import { FRAME_HEADER_BYTES, fsyncDir, LostRecord, MAX_RECORD_BYTES, Spool, type SpoolEntry } from './spool.js';
import { OPEN_FILE, OpenWork, workChange, type WorkChange } from './open-work.js';
import { decodeRecord } from './schema.js';
import { TreeStore } from './tree-store.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export { CHECKPOINT_DIR, checkpointFileName } from './evidence.js';

export interface CheckpointOptions {
  /** The gateway's audit key as a note signer; its name is the checkpoint origin. */
  signer: NoteSigner;
  /** A checkpoint after this many records. Default 1000. */
  everyRecords?: number;
  /** A checkpoint when this much time (on the log's clock) passed since the last one and records were added. Default 60 s. */
  everyMs?: number;
}

export interface AuditLogOptions {
  dir: string;
  gatewayId: string;
  clock: Clock;
  /** Spool size beyond which appends throw AUDIT_UNAVAILABLE. Default 256 MiB. */
  maxBytes?: number;
  /** Size at which a new segment file is started. Default 16 MiB. */
  segmentBytes?: number;
  /** Encoded records kept in memory for the shipper, newest first out. Default 8192. */
  cacheRecords?: number;
  /** Signed checkpoints (C2SP tlog-checkpoint); none when absent. */
  checkpoints?: CheckpointOptions;
  /**
   * How long a batch with nobody waiting for it (records of reads, outcomes, session events) may
   * gather more records before its write and fsync. A durable append (a write's decision) flushes
   * at the end of its event-loop turn regardless. Default 10 ms; 0 flushes every turn.
   */
  lazyFlushMs?: number;
  logger?: Logger;
  /** Only for `audit recover`: lost-record markers it just wrote are opened before their AUDIT_GAP records exist. */
  declaringLoss?: boolean;
}

/** Minimum time between two writes of the acknowledged point (see markAcked). */
const ACK_PERSIST_MS = 100;

/**
 * A full spool, fully accounted (docs/audit.md, Full spool): writes are refused once the spool reaches
 * maxBytes less two reserves of 1/16 each. One is kept for the records of reads, the other for the
 * records of denials. The records that must be written whatever happens (the outcome of a write
 * already forwarded, checkpoints, the log's own events: few, and bounded by the writes in flight)
 * may take any room left below maxBytes, so a flood of denials never crowds them out.
 */
export const RESERVE_SHARE = 16;
/** Room a read's record is assumed to need when it is let through before it is written (a generous bound). */
const READ_RECORD_ROOM = 2048;
/** The smallest spool whose reserves hold a useful number of records (config check refuses less). */
export const MIN_SPOOL_BYTES = 256 * 1024;

/** Which part of the spool a record may use: see RESERVE_SHARE. */
type Room = 'change' | 'read' | 'deny' | 'must';

const EFFECT_DENY = 2;

/** The event fields of an AuditRecord: a dropped record is counted under its kind. */
const EVENT_KINDS = [
  'decision', 'outcome', 'session', 'token', 'bundle', 'violation', 'checkpoint', 'revocation',
  'interlockTrip', 'approval', 'freeze', 'auditGap', 'restart', 'dropped', 'sinkAlert',
] as const;

interface Waiter {
  seq: number;
  resolve: (seq: number) => void;
  reject: (err: Error) => void;
}

interface Batch {
  firstSeq: number;
  /** Length of each record's spool frame, in seq order (the frames are in the frame arena). */
  frameLengths: number[];
  checkpoints: { size: number; note: string }[];
  bytes: number;
  waiters: Waiter[];
  /** Sessions opened/closed and durable decisions/outcomes in this batch (open-work.ts). */
  changes: WorkChange[];
}

/** A durable record read back: its exact bytes, or (a lost record, docs/audit.md Recovery) only its leaf hash. */
export interface LogEntry {
  seq: number;
  bytes: Uint8Array;
  /** Set for a lost record: its leaf hash (bytes is empty). */
  lost?: Uint8Array;
}

const NO_BYTES = new Uint8Array(0);

/** The leaf hash of a record read back from the log. */
export function entryLeafHash(e: LogEntry): Uint8Array {
  return e.lost ?? leafHash(e.bytes);
}

function entryHash(e: SpoolEntry): Uint8Array {
  return e instanceof LostRecord ? e.leafHash : leafHash(e);
}

export interface AuditLogStats {
  nextSeq: number;
  durableSeq: number;
  ackedSeq: number;
  fsyncs: number;
  batches: number;
  bytes: number;
  segments: number;
  failed: boolean;
  /** Size of the last durable signed checkpoint, -1 before any. */
  checkpointSize: number;
  /** Writes are refused: the spool reached its bound for them (or failed, or closed). */
  full: boolean;
  /** Records refused for want of room since start (each counted in a RecordsDroppedEvent once there is room). */
  dropped: number;
}

export class AuditLog {
  private nextSeqValue: number;
  private lastHash: Uint8Array;
  private durableNext: number;
  private acked: number;
  private pending: Batch;
  private scheduled = false;
  /** A lazy flush timer is armed (no durable waiter yet in the pending batch). */
  private lazyTimer: NodeJS.Timeout | undefined;
  /** sync() calls in progress: they want everything flushed now, lazy or not. */
  private syncing = 0;
  /** When the acknowledged point was last persisted (performance.now()). */
  private ackWrittenAt = -Infinity;
  private flushing: Promise<void> | undefined;
  /** Bytes of the batch being written: neither pending nor yet in the spool's size. */
  private readonly encoder = new RecordEncoder();
  private readonly stamp: Mutable<RecordStamp> = { schemaVersion: SCHEMA_VERSION, gatewayId: '', seq: 0, timeUnixMs: 0, prevHash: new Uint8Array(0) };
  private readonly arena = new FrameArena();
  private readonly digests = new DigestArena();
  private failure: AuditError | undefined;
  private closed = false;
  /** Bytes kept for reads, and for records that must be written (see RESERVE_SHARE). */
  private readonly reserve: number;
  /** Bytes of must-write records appended beyond the writes' bound since the spool last dropped below it. */
  private reserveUse = 0;
  /** Records refused for want of room and not yet reported in a RecordsDroppedEvent. */
  private drops: { count: number; denials: number; firstMs: number; lastMs: number; byEvent: Record<string, number> } | undefined;
  private droppedTotal = 0;
  private reportingDrops = false;
  /** Spool size at which the last write's record was refused (isFull until the spool shrinks below it). */
  private writeRefusedAt = Infinity;
  /** Open sessions and outcome-pending writes as of the durable point (open-work.ts). */
  private work = new OpenWork();
  /** open.json writes, one after another (each newer than the last). */
  private workWrites: Promise<void> = Promise.resolve();
  /** tree.hashes writes, in batch order, each after its batch's records are durable. */
  private treeWrites: Promise<void> = Promise.resolve();
  private batches = 0;
  private ackChain: Promise<void> = Promise.resolve();
  private ackWanted = -1;
  // Recent durable records, so the shipper's happy path never touches the disk.
  /** Recent durable records, for the shipper and sinks to read without touching the spool. */
  private readonly recent: RecordRing;
  private readonly listeners = new Set<() => void>();
  private lastCheckpoint: { size: number; note: string } | undefined;
  /** Checkpoint files with no witness cosignature yet (the newest ones; see uncosignedCheckpoints). */
  private readonly uncosigned = new Set<number>();
  /**
   * First seq after the last checkpoint record appended (durable or not), and when, on the log's
   * clock. The checkpoint record itself does not count towards the next one.
   */
  private cpNext: number;
  private cpTime: number;
  private cpTimer: NodeJS.Timeout | undefined;
  private readonly flushNow = (): void => {
    this.scheduled = false;
    if (this.lazyTimer !== undefined) {
      clearTimeout(this.lazyTimer);
      this.lazyTimer = undefined;
    }
    if (this.flushing || this.pending.frameLengths.length === 0) return;
    const p = this.flush().finally(() => {
      this.flushing = undefined;
      // Appends made while the last write was in flight and not picked up by the loop.
      if (this.pending.frameLengths.length > 0 && !this.failure) this.scheduleFlush();
    });
    this.flushing = p;
  };

  /**
   * Group commit: a batch someone waits on (a write's decision record) is written and fsynced at
   * the end of this event-loop turn, after every I/O callback of the turn has appended to it. A
   * batch nobody waits on waits up to lazyFlushMs for company: under a read load this turns
   * hundreds of fsyncs a second (each one a thread-pool wake-up and journal commit competing with
   * the command path for two cores) into a few, without holding back any forward.
   */
  private scheduleFlush(): void {
    if (this.scheduled) return;
    if (this.pending.waiters.length > 0 || this.lazyFlushMs <= 0) {
      this.scheduled = true;
      if (this.lazyTimer !== undefined) {
        clearTimeout(this.lazyTimer);
        this.lazyTimer = undefined;
      }
      setImmediate(this.flushNow);
    } else if (this.lazyTimer === undefined) {
      this.lazyTimer = setTimeout(this.flushNow, this.lazyFlushMs);
    }
  }

  private constructor(
    private readonly spool: Spool,
    private readonly gatewayId: string,
    private readonly clock: Clock,
    private readonly maxBytes: number,
    cacheRecords: number,
    private readonly logger: Logger,
    recovered: { nextSeq: number; lastHash: Uint8Array; ackedSeq: number },
    private readonly tree: TreeStore,
    private readonly frontier: Frontier,
    private readonly cpOpts: Required<CheckpointOptions> | undefined,
    lastCheckpoint: { size: number; note: string } | undefined,
    private readonly lazyFlushMs: number,
  ) {
    this.nextSeqValue = recovered.nextSeq;
    this.durableNext = recovered.nextSeq;
    this.reserve = Math.floor(maxBytes / RESERVE_SHARE);
    // 8,192 records of ~300 bytes fit in 4 MiB; a window of larger records just holds fewer.
    this.recent = new RecordRing(cacheRecords, 4 << 20, recovered.nextSeq);
    this.lastHash = recovered.lastHash;
    this.acked = recovered.ackedSeq;
    this.pending = this.newBatch();
    this.lastCheckpoint = lastCheckpoint;
    this.cpNext = lastCheckpoint ? lastCheckpoint.size + 1 : 0;
    this.cpTime = clock.now();
    if (cpOpts) {
      // Polls the log's clock; the decision (maybeCheckpoint) uses that clock, so tests drive it by hand.
      this.cpTimer = setInterval(() => this.maybeCheckpoint(), Math.max(10, Math.min(cpOpts.everyMs, 1000)));
      this.cpTimer.unref();
    }
  }

  /** Opens (or recovers) the spool in opts.dir: torn tail cut, next seq, last hash and acked seq restored. */
  static async open(opts: AuditLogOptions): Promise<AuditLog> {
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(opts.gatewayId)) {
      throw new AuditError(`gateway id "${opts.gatewayId}" must be 1-128 characters of A-Z a-z 0-9 . _ -`);
    }
    const logger = opts.logger ?? silentLogger;
    // Segments are what gets deleted once acknowledged, and the one being written is never deleted:
    // they must be well below the size bound, or a full spool could never free space.
    const maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
    const segmentBytes = Math.min(opts.segmentBytes ?? 16 * 1024 * 1024, Math.max(4096, Math.floor(maxBytes / 8)));
    await mkdir(opts.dir, { recursive: true });
    // tree.hashes, the checkpoint files and acked.json say how far the log reached: the spool may
    // cut a torn tail, never records they vouch for (docs/audit.md, Recovery).
    const evidence = await readEvidence(opts.dir);
    let opened;
    try {
      opened = await Spool.open(opts.dir, segmentBytes, logger, evidence, { declaringLoss: opts.declaringLoss });
    } finally {
      evidence.close();
    }
    const { spool, recovered } = opened;
    let treeOpened;
    let lastCheckpoint: { size: number; note: string } | undefined;
    try {
      await mkdir(join(opts.dir, CHECKPOINT_DIR), { recursive: true });
      lastCheckpoint = await readLatestCheckpoint(join(opts.dir, CHECKPOINT_DIR), recovered.nextSeq);
      // The tree file is fsynced before each checkpoint file is written and before acknowledged
      // records are deleted: hashes up to there are on disk, later ones are recomputed.
      const trustedLeaves = Math.max(recovered.ackedSeq + 1, lastCheckpoint?.size ?? 0);
      treeOpened = await TreeStore.open(
        opts.dir,
        recovered.nextSeq,
        spool.firstSeq(recovered.nextSeq),
        async (from, to) => (await spool.read(from, to - from)).map(entryHash),
        trustedLeaves,
      );
    } catch (err) {
      await spool.close();
      throw err instanceof AuditError ? err : new AuditError(`audit tree: ${(err as Error).message}`, { cause: err });
    }
    const cp = opts.checkpoints;
    const cpOpts = cp ? { signer: cp.signer, everyRecords: cp.everyRecords ?? 1000, everyMs: cp.everyMs ?? 60_000 } : undefined;
    if (cpOpts && (!Number.isSafeInteger(cpOpts.everyRecords) || cpOpts.everyRecords < 1 || !(cpOpts.everyMs > 0))) {
      await spool.close();
      await treeOpened.store.close();
      throw new AuditError('checkpoints: everyRecords must be an integer >= 1 and everyMs > 0');
    }
    let crash: { work: OpenWork; lastTimeMs: number } | undefined;
    try {
      crash = await uncleanStop(opts.dir, spool, recovered.nextSeq);
    } catch (err) {
      await spool.close();
      await treeOpened.store.close();
      throw err instanceof AuditError ? err : new AuditError(`audit spool: ${(err as Error).message}`, { cause: err });
    }
    logger.info(
      {
        dir: opts.dir,
        nextSeq: recovered.nextSeq,
        ackedSeq: recovered.ackedSeq,
        truncatedBytes: recovered.truncatedBytes,
        treeLeavesRebuilt: treeOpened.rebuiltLeaves,
        checkpointSize: lastCheckpoint?.size ?? -1,
      },
      'audit spool opened',
    );
    const log = new AuditLog(
      spool,
      opts.gatewayId,
      opts.clock,
      maxBytes,
      opts.cacheRecords ?? 8192,
      logger,
      recovered,
      treeOpened.store,
      treeOpened.frontier,
      cpOpts,
      lastCheckpoint,
      opts.lazyFlushMs ?? 10,
    );
    for (const size of await uncosignedFiles(join(opts.dir, CHECKPOINT_DIR), recovered.nextSeq)) log.uncosigned.add(size);
    if (crash) log.recordUncleanStop(crash.work, crash.lastTimeMs, recovered.truncatedBytes);
    return log;
  }

  /**
   * After an unclean stop (docs/audit.md, Crash evidence): one RestartEvent naming the writes whose
   * decision was durable and whose outcome is not recorded, then a close record for each session
   * left open. They are appended before anything else the gateway writes.
   */
  private recordUncleanStop(work: OpenWork, lastTimeMs: number, tornBytes: number): void {
    this.work = work;
    const sessions = [...work.sessions.values()];
    const lastSeq = this.nextSeqValue - 1;
    const seq = this.append(
      restartRecord({ lastSeq, lastTimeMs, outcomeUnknown: [...work.pending].sort((a, b) => a - b), sessionsClosed: sessions.map((s) => s.id), tornBytes }),
    );
    for (const s of sessions) {
      this.append({
        session: {
          kind: 'close',
          sessionId: s.id,
          protocol: s.protocol,
          remoteAddress: s.remote,
          listener: '',
          subject: s.workload ? { workloadId: s.workload } : null,
          reason: '',
          detail: `closed at restart: the gateway stopped uncleanly after seq ${lastSeq} (restart record seq ${seq})`,
        },
      });
    }
    this.logger.warn({ lastSeq, outcomeUnknown: work.pending.size, sessionsClosed: sessions.length }, 'audit: the gateway stopped uncleanly; recorded the writes with unknown outcome and closed the open sessions');
  }

  get nextSeq(): number {
    return this.nextSeqValue;
  }
  /** First seq not yet durable: every record below it is fsynced. */
  get durableSeq(): number {
    return this.durableNext;
  }
  get ackedSeq(): number {
    return this.acked;
  }
  /** Oldest seq still readable (records below it were acknowledged and deleted). */
  get firstSeq(): number {
    return this.spool.firstSeq(this.durableNext);
  }
  /** Records not yet acknowledged by the collector. */
  depthRecords(): number {
    return this.nextSeqValue - 1 - this.acked;
  }
  /** Spool size including records not yet durable (pending, and the batch being written). */
  bytes(): number {
    return this.spool.bytes() + this.pending.bytes;
  }
  /** Leaf hash of the last appended record (32 zero bytes before seq 0). */
  lastRecordHash(): Uint8Array {
    return this.lastHash;
  }
  stats(): AuditLogStats {
    return {
      nextSeq: this.nextSeqValue,
      durableSeq: this.durableNext,
      ackedSeq: this.acked,
      fsyncs: this.spool.fsyncs,
      batches: this.batches,
      bytes: this.bytes(),
      segments: this.spool.segmentCount(),
      failed: this.failure !== undefined,
      checkpointSize: this.lastCheckpoint?.size ?? -1,
      full: this.isFull(),
      dropped: this.droppedTotal,
    };
  }

  /**
   * True when the spool is (nearly) at its size bound: state-changing commands should be denied
   * with AUDIT_UNAVAILABLE while reads go on. Also true once the log has failed or closed.
   */
  isFull(): boolean {
    if (this.failure !== undefined || this.closed) return true;
    const used = this.bytes();
    // A write refused a few bytes short of the bound keeps the spool full until records are deleted.
    return used >= this.maxBytes - 2 * this.reserve || used >= this.writeRefusedAt;
  }

  /**
   * Whether a read's record would be taken now (docs/audit.md, One record per read): a read
   * recorded with its answer is let through only while the reads' room has space for it.
   */
  hasRoomForRead(): boolean {
    if (this.failure !== undefined || this.closed) return false;
    const used = this.bytes();
    const reserveUse = used <= this.maxBytes - 2 * this.reserve ? 0 : this.reserveUse;
    return used - reserveUse + READ_RECORD_ROOM <= this.maxBytes - this.reserve;
  }

  /** The last durable signed checkpoint (with any cosignatures stored since), if any. */
  latestCheckpoint(): { size: number; note: string } | undefined {
    return this.lastCheckpoint;
  }

  /** Directory of the spool (checkpoints/, tree.hashes, segments). */
  get dir(): string {
    return this.spool.dir;
  }

  /**
   * Assigns seq + prev_hash, encodes, queues for the next group commit. Returns the seq.
   * Throws AuditError (AUDIT_UNAVAILABLE) when the spool is full, broken or closed.
   */
  append(event: Readonly<AuditEvent>): number {
    const seq = this.appendRecord(event);
    if (this.cpOpts && this.nextSeqValue - this.cpNext >= this.cpOpts.everyRecords) this.appendCheckpoint();
    return seq;
  }

  /** Appends a checkpoint if T has passed on the log's clock since the last one and records were added. */
  maybeCheckpoint(): void {
    if (!this.cpOpts || this.failure || this.closed) return;
    if (this.nextSeqValue > this.cpNext && this.clock.now() - this.cpTime >= this.cpOpts.everyMs) this.appendCheckpoint();
  }

  /**
   * Appends a signed checkpoint of every record so far (unless the last one already covers them).
   * Returns its seq, or undefined when none was needed or possible.
   */
  checkpointNow(): number | undefined {
    if (!this.cpOpts || this.failure || this.closed || this.nextSeqValue <= this.cpNext) return undefined;
    return this.appendCheckpoint();
  }

  private appendCheckpoint(): number | undefined {
    const opts = this.cpOpts!;
    const size = this.nextSeqValue;
    const root = this.frontier.root();
    let note: string;
    let seq: number;
    try {
      note = signCheckpoint({ origin: opts.signer.name, size, root }, opts.signer);
      seq = this.appendRecord({ checkpoint: { treeSize: size, rootHash: root, origin: opts.signer.name, note } });
    } catch (err) {
      // A full or failed spool already denies what matters; the next checkpoint covers these records.
      this.logger.warn({ err: (err as Error).message, size }, 'audit: checkpoint not appended');
      return undefined;
    }
    this.pending.checkpoints.push({ size, note });
    this.cpNext = seq + 1;
    this.cpTime = this.clock.now();
    return seq;
  }

  /** The stored note of checkpoint `size` (with any cosignatures), or undefined when there is none. */
  async checkpointNote(size: number): Promise<string | undefined> {
    try {
      return await readFile(join(this.spool.dir, CHECKPOINT_DIR, checkpointFileName(size)), 'utf8');
    } catch {
      return undefined;
    }
  }

  /**
   * Stores a witness's cosignature line next to checkpoint `size` (appended to its note file).
   * The caller has checked it is for that checkpoint's body; unknown sizes are refused.
   */
  async storeCosignature(size: number, line: string): Promise<void> {
    const file = join(this.spool.dir, CHECKPOINT_DIR, checkpointFileName(size));
    let note: string;
    try {
      note = await readFile(file, 'utf8');
    } catch (err) {
      throw new AuditError(`no checkpoint of size ${size} to cosign: ${(err as Error).message}`, { cause: err });
    }
    const updated = addSignatureLines(note, [line]);
    this.uncosigned.delete(size);
    if (updated === note) return;
    await writeFileAtomic(file, updated);
    if (this.lastCheckpoint?.size === size) this.lastCheckpoint = { size, note: updated };
  }

  private appendRecord(event: Readonly<AuditEvent>): number {
    if (this.failure) throw this.failure;
    if (this.closed) throw new AuditError('audit log is closed');
    // Records refused for want of room are reported, exactly counted, first thing once there is room.
    if (this.drops !== undefined && !this.reportingDrops) this.reportDrops();
    const seq = this.nextSeqValue;
    // The stamp goes beside the event, never onto it: the caller's object is read only. One stamp
    // object of the log's own, refilled per record (this runs twice per command).
    const stamp = this.stamp;
    stamp.gatewayId = this.gatewayId;
    stamp.seq = seq;
    stamp.timeUnixMs = this.clock.now();
    stamp.prevHash = this.lastHash;
    // 0x00 || record in the encoder's reused buffer: the leaf hash is one one-shot SHA-256 call
    // over it, and the record is copied once, into its spool frame.
    const leafInput = this.encoder.encodeLeafInput(stamp, event);
    const recordBytes = leafInput.length - 1;
    // Checked before the seq is taken, so a refused record leaves no gap in the chain.
    if (recordBytes > MAX_RECORD_BYTES) {
      // Recovery would take a longer frame for a torn tail and cut it (and all after it) off.
      throw new AuditError(`audit record of ${recordBytes} bytes exceeds the limit of ${MAX_RECORD_BYTES}`);
    }
    const room = this.roomOf(event);
    const n = FRAME_HEADER_BYTES + recordBytes;
    const used = this.bytes();
    const writesBound = this.maxBytes - 2 * this.reserve;
    if (used <= writesBound) this.reserveUse = 0;
    if (used < this.writeRefusedAt) this.writeRefusedAt = Infinity;
    // reserveUse counts what denials and must-write records took past the writes' bound, so the
    // reads' reserve stays theirs.
    const fits =
      room === 'change'
        ? used + n <= writesBound
        : used + n <= this.maxBytes &&
          (room === 'must' ||
            (room === 'read' ? used - this.reserveUse + n <= this.maxBytes - this.reserve : used + n <= writesBound || this.reserveUse + n <= this.reserve));
    if (!fits) {
      // A refused write is decided again as a denial, and that is recorded: only other records are dropped.
      if (room === 'change') this.writeRefusedAt = used;
      else if (!this.reportingDrops) this.countDrop(event);
      throw new AuditError(`audit spool is full (${this.maxBytes} bytes): the collector has not acknowledged enough records`);
    }
    if ((room === 'must' || room === 'deny') && used + n > writesBound) this.reserveUse += n;
    // The arenas keep the frame and the stored hashes (leaf, then the nodes it completes) in
    // order until the batch is flushed; the batch itself holds only the frame's length.
    let frameBytes: number;
    try {
      this.lastHash = this.digests.digest(leafInput);
      this.frontier.appendWith(this.lastHash, this.digests.node);
      frameBytes = this.arena.frame(leafInput, 1, leafInput.length);
    } catch (err) {
      // Half a record (a hash without its frame, an advanced frontier) would misalign the tree
      // with the spool from here on: refuse everything rather than write a wrong tree.
      this.fail(err, this.pending, 'audit append failed mid-record');
      throw this.failure!;
    }
    this.nextSeqValue = seq + 1;
    const b = this.pending;
    b.frameLengths.push(frameBytes);
    b.bytes += frameBytes;
    const change = workChange(seq, event);
    if (change !== undefined) b.changes.push(change);
    // setImmediate or a short timer, never a microtask: everything appended in this turn of the
    // event loop, including other connections' I/O callbacks, joins the same write and fsync.
    this.scheduleFlush();
    return seq;
  }

  /** Where a record may go when the spool fills up (see RESERVE_SHARE). */
  private roomOf(rec: Readonly<AuditEvent>): Room {
    const d = rec.decision;
    if (d != null) {
      const info = d.decision;
      if (info != null && info.effect === EFFECT_DENY) return 'deny';
      return info?.durable ? 'change' : 'read';
    }
    // The outcome of a write whose decision is durable: what the PLC did with it must be on record.
    if (rec.outcome != null) return this.work.pending.has(Number(rec.outcome.decisionSeq ?? 0)) ? 'must' : 'read';
    // A count of dropped records waits in the denials' room: anywhere else each drop would be
    // reported at once, one record per dropped record.
    if (rec.dropped != null) return 'deny';
    if (rec.checkpoint != null || rec.restart != null || rec.auditGap != null || rec.sinkAlert != null) return 'must';
    return 'read';
  }

  private countDrop(rec: Readonly<AuditEvent>): void {
    const now = this.clock.now();
    const d = (this.drops ??= { count: 0, denials: 0, firstMs: now, lastMs: now, byEvent: {} });
    d.count++;
    d.lastMs = now;
    if (rec.decision?.decision?.effect === EFFECT_DENY) d.denials++;
    const kind = EVENT_KINDS.find((k) => rec[k] != null) ?? 'unknown';
    d.byEvent[kind] = (d.byEvent[kind] ?? 0) + 1;
    this.droppedTotal++;
    if (d.count === 1) this.logger.error({ kind }, 'audit spool full: dropping records that do not fit; they are counted and reported once there is room');
  }

  /** Appends the RecordsDroppedEvent of the records dropped so far, if it fits now. */
  private reportDrops(): void {
    const d = this.drops;
    if (d === undefined) return;
    this.reportingDrops = true;
    try {
      this.appendRecord(droppedRecord(d));
      this.drops = undefined;
      this.logger.warn({ dropped: d.count, denials: d.denials }, 'audit: records dropped while the spool was full are now on record (count)');
    } catch {
      // still no room: tried again with the next record, and after the next deletion
    } finally {
      this.reportingDrops = false;
    }
  }

  /** Same as append, and resolves only after the batch containing it is written and fsynced. */
  appendDurable(event: Readonly<AuditEvent>): Promise<number> {
    let seq: number;
    try {
      seq = this.append(event);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<number>((resolve, reject) => {
      this.pending.waiters.push({ seq, resolve, reject });
      // Someone waits now: the batch goes at the end of this turn, not after the lazy delay.
      this.scheduleFlush();
    });
  }

  /** Resolves when everything appended so far is durable (rejects if the log failed). */
  async sync(): Promise<void> {
    this.syncing++;
    try {
      while (!this.failure && (this.flushing || this.pending.frameLengths.length > 0)) {
        if (!this.flushing) this.flushNow();
        await this.flushing;
      }
    } finally {
      this.syncing--;
    }
    if (this.failure) throw this.failure;
  }

  private newBatch(): Batch {
    return { firstSeq: this.nextSeqValue, frameLengths: [], checkpoints: [], bytes: 0, waiters: [], changes: [] };
  }

  private async flush(): Promise<void> {
    // Straight on with what gathered during the last fsync only when someone waits on it (or a
    // sync() asked): otherwise it joins the next lazy batch.
    for (let first = true; this.pending.frameLengths.length > 0 && !this.failure; first = false) {
      if (!first && this.pending.waiters.length === 0 && this.lazyFlushMs > 0 && !this.syncing) break;
      const batch = this.pending;
      this.pending = this.newBatch();
      // Everything the arenas hold was appended to this batch (appends run on this thread).
      const frames = this.arena.drain();
      const treeHashes = this.digests.drain();
      // From here the spool counts the batch's bytes (spool.bytes()), written or not, exactly once.
      try {
        await this.spool.appendBatch(frames, batch.frameLengths, batch.firstSeq);
      } catch (err) {
        this.fail(err, batch);
        return;
      }
      // The batch's tree hashes are written only now that its records are durable, so a leaf in
      // tree.hashes always stands for a record that was on disk: recovery takes a spool that ends
      // before tree.hashes does as loss, not as a torn tail (docs/audit.md, Recovery). Nobody waits
      // for this write; the next batch's records go to disk meanwhile.
      this.treeWrites = this.treeWrites.then(
        () => (this.failure ? undefined : this.tree.append(treeHashes)),
        () => undefined,
      );
      this.treeWrites.catch((err: unknown) => this.fail(err, this.pending, 'audit tree.hashes write failed'));
      this.batches++;
      this.durableNext = batch.firstSeq + batch.frameLengths.length;
      for (const c of batch.changes) this.work.apply(c);
      this.remember(frames, batch.frameLengths);
      for (const w of batch.waiters) w.resolve(w.seq);
      // The checkpoint file exists before the shipper sends its record, so a witness's cosignature
      // always finds it.
      for (const cp of batch.checkpoints) await this.publishCheckpoint(cp);
      this.notify();
    }
  }

  private async publishCheckpoint(cp: { size: number; note: string }): Promise<void> {
    try {
      // A checkpoint file vouches, at recovery, for the tree hashes up to its size (see open).
      await this.syncTree();
      await writeFileAtomic(join(this.spool.dir, CHECKPOINT_DIR, checkpointFileName(cp.size)), cp.note);
      // Bounds what a restart after a crash replays to find open sessions and pending writes.
      await this.saveOpenWork();
    } catch (err) {
      // The checkpoint is durable as a record in the spool; only the convenience copy is missing.
      this.logger.error({ err, size: cp.size }, 'audit: cannot write checkpoint file');
    }
    if (!this.lastCheckpoint || cp.size > this.lastCheckpoint.size) this.lastCheckpoint = cp;
    this.uncosigned.add(cp.size);
  }

  /**
   * Sizes of checkpoints no witness has cosigned yet, oldest first: the shipper asks the collector
   * for them again after a crash or an outage lost a cosignature on the way back. Those of the
   * newest UNCOSIGNED_SCAN checkpoint files at start, and every one signed since.
   */
  uncosignedCheckpoints(): number[] {
    return [...this.uncosigned].sort((a, b) => a - b);
  }


  /** Writes open.json: the open work as of the durable point (never an older state over a newer one). */
  private saveOpenWork(): Promise<void> {
    const p = this.workWrites.then(() => writeFileAtomic(join(this.spool.dir, OPEN_FILE), this.work.toJson(this.durableNext)));
    this.workWrites = p.catch(() => undefined);
    return p;
  }

  /** Fsyncs tree.hashes once the writes queued so far are done. */
  private async syncTree(): Promise<void> {
    await this.treeWrites;
    if (this.failure) throw this.failure;
    await this.tree.sync();
  }

  private fail(err: unknown, batch: Batch, what = 'audit spool write failed'): void {
    // After a failed fsync the kernel may have dropped the dirty pages: nothing written since the
    // last good fsync can be trusted, and no later record may be reported durable.
    this.failure = new AuditError(`${what}: ${(err as Error).message ?? String(err)}`, { cause: err });
    this.logger.error({ err, firstSeq: batch.firstSeq }, 'audit spool failed; refusing further records');
    for (const w of batch.waiters) w.reject(this.failure);
    for (const w of this.pending.waiters) w.reject(this.failure);
    this.pending = this.newBatch();
    // The arenas' frames and hashes belong to the pending batch just dropped.
    this.arena.drain();
    this.digests.drain();
    this.notify();
  }

  private remember(frames: Buffer[], lengths: number[]): void {
    forEachRecord(frames, lengths, (run, start, end) => this.recent.push(run, start, end));
  }

  /** Calls `listener` after each durable batch (and on failure or close). Returns an unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  /**
   * Durable records from `seq` on, as encoded bytes (the exact bytes that were hashed).
   * Throws AuditError when `seq` was already acknowledged and deleted.
   */
  /**
   * Durable records `seq` onwards (at most `max`) as the shipper's stream frames in one buffer,
   * straight from the recent-records ring; undefined when `seq` is not there (read the spool with
   * readFrom). The shipper's fast path: no copy per record, no entry objects.
   */
  readFramesFrom(seq: number, max: number): { bytes: Buffer; count: number } | undefined {
    if (seq >= this.durableNext) return undefined;
    return this.recent.frames(seq, Math.min(max, this.durableNext - seq));
  }

  async readFrom(seq: number, max: number): Promise<LogEntry[]> {
    const first = this.firstSeq;
    if (seq < first) throw new AuditError(`records before seq ${first} are no longer in the spool (asked for ${seq})`);
    const out: LogEntry[] = [];
    if (seq >= this.durableNext || max <= 0) return out;
    if (seq >= this.recent.firstSeq()) {
      const end = Math.min(this.durableNext, seq + max);
      // Copies: a later append overwrites the ring, and a reader may hold its bytes across awaits.
      for (let s = seq; s < end; s++) out.push({ seq: s, bytes: this.recent.copy(s)! });
      return out;
    }
    const records = await this.spool.read(seq, max);
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      out.push(r instanceof LostRecord ? { seq: seq + i, bytes: NO_BYTES, lost: r.leafHash } : { seq: seq + i, bytes: r });
    }
    return out;
  }

  /**
   * The collector has stored everything up to `seq`: persist that (temp + fsync + rename) and
   * delete segments that hold only acknowledged records.
   */
  markAcked(seq: number): Promise<void> {
    if (seq >= this.durableNext) {
      return Promise.reject(
        new AuditError(`acknowledgement for seq ${seq}, but only records below ${this.durableNext} were ever durable`),
      );
    }
    this.ackWanted = Math.max(this.ackWanted, seq);
    // Acks that queue up behind a slow state write collapse into the newest one.
    const run = async (): Promise<void> => {
      // At most one state write (two fsyncs and a rename) per ACK_PERSIST_MS: acks arriving
      // meanwhile collapse into the newest. A crash loses at most that much acknowledgement: those
      // records stay in the spool a little longer, and the shipper resumes from the collector's
      // own position anyway.
      const wait = this.ackWrittenAt + ACK_PERSIST_MS - performance.now();
      if (wait > 0 && !this.closed) await new Promise((r) => setTimeout(r, wait));
      seq = this.ackWanted;
      if (seq <= this.acked) return;
      this.ackWrittenAt = performance.now();
      const [rec] = await this.readFrom(seq, 1);
      // Acknowledged records may be deleted next: their tree hashes must be on disk first.
      await this.syncTree();
      await this.spool.writeAckState(seq, entryLeafHash(rec));
      // Records up to `seq` may be deleted next: what they opened must be known without them.
      await this.saveOpenWork();
      this.acked = seq;
      const deleted = await this.spool.deleteThrough(seq);
      if (deleted > 0 && this.drops !== undefined && !this.closed && !this.failure) this.reportDrops();
      if (deleted > 0) this.logger.debug({ ackedSeq: seq, deleted }, 'audit spool: deleted acknowledged segments');
    };
    const p = this.ackChain.then(run);
    this.ackChain = p.catch(() => undefined);
    return p;
  }

  /** Flushes and fsyncs what was appended, then closes the files. Further appends throw. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.cpTimer) clearInterval(this.cpTimer);
    // A last checkpoint, so every record written is covered by a signed tree head.
    this.checkpointNow();
    // From here on appends are refused, so the flush below is the last write of the spool: a record
    // slipped in later would be flushed by a timer after the files closed, without its tree hashes.
    this.closed = true;
    try {
      await this.sync();
    } catch {
      // already failed: waiters were rejected; nothing more can be made durable
    }
    if (this.lazyTimer !== undefined) clearTimeout(this.lazyTimer);
    await this.ackChain;
    // A clean stop: the next open finds this and writes no restart record.
    if (!this.failure) await writeFileAtomic(join(this.spool.dir, STOP_FILE), `${JSON.stringify({ next_seq: this.nextSeqValue })}\n`).catch(() => undefined);
    await this.workWrites;
    await this.spool.close();
    await this.treeWrites.catch(() => undefined);
    await this.tree.close();
    this.notify();
  }
}

const STOP_FILE = 'stopped.json';

/**
 * Whether the last stop was unclean (no stopped.json naming the spool's end), consuming the marker;
 * if so, the open work at the end of the spool: open.json, then every record after it replayed.
 */
async function uncleanStop(dir: string, spool: Spool, nextSeq: number): Promise<{ work: OpenWork; lastTimeMs: number } | undefined> {
  const marker = join(dir, STOP_FILE);
  let clean = false;
  try {
    const v = JSON.parse(await readFile(marker, 'utf8')) as { next_seq?: unknown };
    clean = v.next_seq === nextSeq;
  } catch {
    clean = false;
  }
  // Whatever happens from here on, the next stop must write it anew.
  await rm(marker, { force: true });
  await fsyncDir(dir);
  if (clean || nextSeq === 0) return undefined;
  const snapshot = await readFile(join(dir, OPEN_FILE), 'utf8').then(OpenWork.fromJson, () => undefined);
  const first = spool.firstSeq(nextSeq);
  const from = snapshot && snapshot.seq <= nextSeq && snapshot.seq >= first ? snapshot.seq : first;
  const work = snapshot && from === snapshot.seq ? snapshot.work : new OpenWork();
  let lastTimeMs = 0;
  for (let seq = from; seq < nextSeq; ) {
    const entries = await spool.read(seq, 1024);
    if (entries.length === 0) break;
    for (const e of entries) {
      if (!(e instanceof LostRecord)) {
        const rec = decodeRecord(e);
        const c = workChange(seq, rec);
        if (c) work.apply(c);
        lastTimeMs = Number(rec.timeUnixMs);
      }
      seq++;
    }
  }
  if (from >= nextSeq && first < nextSeq) {
    const [last] = await spool.read(nextSeq - 1, 1);
    if (last && !(last instanceof LostRecord)) lastTimeMs = Number(decodeRecord(last).timeUnixMs);
  }
  return { work, lastTimeMs };
}

/** How many of the newest checkpoint files are looked at for a missing cosignature when the log opens. */
const UNCOSIGNED_SCAN = 256;

/** Sizes of the newest checkpoint files carrying only the gateway's own signature. */
async function uncosignedFiles(dir: string, nextSeq: number): Promise<number[]> {
  const names = (await readdir(dir)).filter((n) => /^\d{16}\.checkpoint$/.test(n)).sort().slice(-UNCOSIGNED_SCAN);
  const out: number[] = [];
  for (const name of names) {
    const size = Number(name.slice(0, 16));
    if (size >= nextSeq) continue;
    try {
      if (parseNote(await readFile(join(dir, name), 'utf8')).sigs.length < 2) out.push(size);
    } catch {
      // not a note: nothing a witness could cosign
    }
  }
  return out;
}

/** The newest checkpoint note in `dir` whose size the spool still covers. */
async function readLatestCheckpoint(dir: string, nextSeq: number): Promise<{ size: number; note: string } | undefined> {
  const names = (await readdir(dir)).filter((n) => /^\d{16}\.checkpoint$/.test(n)).sort().reverse();
  for (const name of names) {
    const size = Number(name.slice(0, 16));
    if (size > nextSeq) continue; // a checkpoint of records cut off as a torn tail
    const note = await readFile(join(dir, name), 'utf8');
    try {
      parseNote(note);
    } catch {
      continue;
    }
    return { size, note };
  }
  return undefined;
}
