// Where the collector writes one gateway's verified records: NDJSON (every record, one JSON line,
// the record of truth for resuming) and, optionally, the OCSF-shaped lines for SIEMs, either as
// one file per gateway (`single`: <out>/<gw>.ndjson, <out>/<gw>.ocsf.ndjson) or one per gateway
// per UTC day of the record's time (`daily`: <out>/<gw>/<YYYY-MM-DD>.ndjson, ….ocsf.ndjson).
// Owns these files: appends batches with one write and one fsync per touched file, cuts a torn last
// line after a crash, and reads lines back from a seq on (tree rebuild, OCSF catch-up).
// Never rewrites or reorders a whole line.
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CollectorStateError } from './state.js';

export type OutputLayout = 'single' | 'daily';

const DAY_MS = 86_400_000;

export interface StoredLine {
  seq: number;
  hash: string;
  json: Record<string, unknown>;
}

export interface OutputEntry {
  timeMs: number;
  ndjson: string;
  /** The OCSF line, when the record maps to an OCSF class and OCSF output is on. */
  ocsf?: string;
}

type Kind = 'ndjson' | 'ocsf';

/** One gateway's output files. */
export class GatewayOutput {
  private readonly handles = new Map<string, FileHandle>();

  private constructor(
    private readonly outDir: string,
    private readonly gatewayId: string,
    private readonly layout: OutputLayout,
    readonly ocsf: boolean,
  ) {}

  static async open(outDir: string, gatewayId: string, layout: OutputLayout, ocsf: boolean): Promise<GatewayOutput> {
    const out = new GatewayOutput(outDir, gatewayId, layout, ocsf);
    await mkdir(out.dir(), { recursive: true });
    // Only the newest files can end in a torn line (a batch is written file after file, oldest day
    // first); the two newest are checked in case the disk reordered the last writes.
    for (const kind of ['ndjson', 'ocsf'] as const) {
      for (const f of (await out.files(kind)).slice(-2)) await cutTornLine(f);
    }
    return out;
  }

  private dir(): string {
    return this.layout === 'single' ? this.outDir : join(this.outDir, this.gatewayId);
  }

  /** The file a record of this time goes to. */
  pathFor(kind: Kind, timeMs: number): string {
    const ext = kind === 'ndjson' ? '.ndjson' : '.ocsf.ndjson';
    if (this.layout === 'single') return join(this.outDir, `${this.gatewayId}${ext}`);
    const day = new Date(Math.floor(timeMs / DAY_MS) * DAY_MS).toISOString().slice(0, 10);
    return join(this.outDir, this.gatewayId, `${day}${ext}`);
  }

  /** The files and folder this gateway's output owns in the collector's directory (some may not exist yet). */
  ownPaths(): string[] {
    if (this.layout === 'daily') return [this.dir()];
    return [this.pathFor('ndjson', 0), this.pathFor('ocsf', 0), this.checkpointPath()];
  }

  /** The newest checkpoint this collector witnessed, with its cosignature (a signed note). */
  checkpointPath(): string {
    return this.layout === 'single' ? join(this.outDir, `${this.gatewayId}.checkpoint`) : join(this.dir(), 'latest.checkpoint');
  }

  /** Appends OCSF lines only (regenerated after a crash). */
  async appendOcsfOnly(entries: OutputEntry[]): Promise<void> {
    const byFile = new Map<string, string[]>();
    for (const e of entries) {
      const p = this.pathFor('ocsf', e.timeMs);
      const c = byFile.get(p) ?? [];
      c.push(e.ocsf!);
      byFile.set(p, c);
    }
    for (const [path, lines] of byFile) {
      const h = await this.handle(path);
      await h.write(lines.join('\n') + '\n');
      await h.sync();
    }
  }

  /** Existing output files of one kind, oldest first. */
  async files(kind: Kind): Promise<string[]> {
    if (this.layout === 'single') {
      const p = this.pathFor(kind, 0);
      const names = await readdir(this.outDir).catch(() => [] as string[]);
      return names.includes(p.slice(this.outDir.length + 1)) ? [p] : [];
    }
    const re = kind === 'ndjson' ? /^\d{4}-\d{2}-\d{2}\.ndjson$/ : /^\d{4}-\d{2}-\d{2}\.ocsf\.ndjson$/;
    const names = (await readdir(this.dir()).catch(() => [] as string[])).filter((n) => re.test(n)).sort();
    return names.map((n) => join(this.dir(), n));
  }

  /** The last stored line of a kind, if any. */
  async last(kind: Kind): Promise<StoredLine | undefined> {
    const files = await this.files(kind);
    for (let i = files.length - 1; i >= 0; i--) {
      const line = await lastLine(files[i]);
      if (line) return parseStored(line, files[i]);
    }
    return undefined;
  }

  /** Every stored line with seq >= from, in order. Reads from the newest file that starts at or before `from`. */
  async *linesFrom(kind: Kind, from: number): AsyncGenerator<StoredLine> {
    const files = await this.files(kind);
    let start = 0;
    for (let i = files.length - 1; i >= 0; i--) {
      const first = await firstLine(files[i]);
      if (first && parseStored(first, files[i]).seq <= from) {
        start = i;
        break;
      }
    }
    for (const f of files.slice(start)) {
      const rl = createInterface({ input: createReadStream(f), crlfDelay: Infinity });
      for await (const line of rl) {
        if (line === '') continue;
        const s = parseStored(line, f);
        if (s.seq >= from) yield s;
      }
    }
  }

  /** Appends a batch: one write per touched file, then one fsync each. Resolves once durable. */
  async append(entries: OutputEntry[]): Promise<void> {
    const chunks = new Map<string, string[]>();
    const add = (path: string, line: string): void => {
      let c = chunks.get(path);
      if (!c) chunks.set(path, (c = []));
      c.push(line);
    };
    let lastDay = NaN;
    let nd = '';
    let oc = '';
    for (const e of entries) {
      const day = Math.floor(e.timeMs / DAY_MS);
      if (day !== lastDay) {
        lastDay = day;
        nd = this.pathFor('ndjson', e.timeMs);
        oc = this.pathFor('ocsf', e.timeMs);
      }
      add(nd, e.ndjson);
      if (this.ocsf && e.ocsf !== undefined) add(oc, e.ocsf);
    }
    const touched: FileHandle[] = [];
    // Map iteration is insertion order: older days first, NDJSON before its OCSF lines.
    for (const [path, lines] of chunks) {
      const h = await this.handle(path);
      await h.write(lines.join('\n') + '\n');
      touched.push(h);
    }
    for (const h of touched) await h.sync();
  }

  private async handle(path: string): Promise<FileHandle> {
    let h = this.handles.get(path);
    if (!h) {
      // Files of older days are closed when a newer day starts: at most two per kind stay open.
      if (this.handles.size >= 4) {
        for (const [p, old] of this.handles) {
          this.handles.delete(p);
          await old.close();
          if (this.handles.size < 2) break;
        }
      }
      h = await open(path, 'a');
      this.handles.set(path, h);
    }
    return h;
  }

  async close(): Promise<void> {
    for (const h of this.handles.values()) await h.close();
    this.handles.clear();
  }
}

function parseStored(line: string, file: string): StoredLine {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new CollectorStateError(`${file}: a line is not JSON (edited by hand?)`);
  }
  // OCSF lines carry seq and hash under metadata.
  const meta = json.metadata as { sequence?: unknown; uid?: unknown; labels?: unknown } | undefined;
  const seq = typeof json.seq === 'number' ? json.seq : meta?.sequence;
  const hash = typeof json.hash === 'string' ? json.hash : (json.unmapped as { hash?: unknown } | undefined)?.hash;
  if (typeof seq !== 'number' || typeof hash !== 'string') throw new CollectorStateError(`${file}: a line has no seq and hash`);
  return { seq, hash, json };
}

const TAIL_CHUNK = 1 << 16;

async function cutTornLine(path: string): Promise<void> {
  const h = await open(path, 'r+');
  try {
    const { size } = await h.stat();
    if (size === 0) return;
    const last = Buffer.alloc(1);
    await h.read(last, 0, 1, size - 1);
    if (last[0] === 0x0a) return;
    // Find the last newline, reading backwards.
    let end = size;
    let cut = 0;
    while (end > 0) {
      const len = Math.min(TAIL_CHUNK, end);
      const buf = Buffer.alloc(len);
      await h.read(buf, 0, len, end - len);
      const nl = buf.lastIndexOf(0x0a);
      if (nl >= 0) {
        cut = end - len + nl + 1;
        break;
      }
      end -= len;
    }
    await h.truncate(cut);
    await h.sync();
  } finally {
    await h.close();
  }
}

async function lastLine(path: string): Promise<string | undefined> {
  const h = await open(path, 'r');
  try {
    const { size } = await h.stat();
    let end = size;
    let acc = Buffer.alloc(0);
    while (end > 0) {
      const len = Math.min(TAIL_CHUNK, end);
      const buf = Buffer.alloc(len);
      await h.read(buf, 0, len, end - len);
      acc = Buffer.concat([buf, acc]);
      end -= len;
      const trimmed = acc[acc.length - 1] === 0x0a ? acc.subarray(0, acc.length - 1) : acc;
      const nl = trimmed.lastIndexOf(0x0a);
      if (nl >= 0) return trimmed.subarray(nl + 1).toString('utf8');
      if (end === 0 && trimmed.length > 0) return trimmed.toString('utf8');
    }
    return undefined;
  } finally {
    await h.close();
  }
}

async function firstLine(path: string): Promise<string | undefined> {
  const rl = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  for await (const line of rl) {
    if (line !== '') {
      rl.close();
      return line;
    }
  }
  return undefined;
}
