// Reading one policy source file: YAML with line positions, and the field checks every section
// uses (keys, strings, ids, numbers, durations), each problem a SourceError naming file, line,
// column and field. Part of the rule compiler (src/policy/sources.ts); never decides policy.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node, type Pair } from 'yaml';
import { SourceError } from '../../core/errors.js';
import { rangeSyntaxHint } from '../../assets/plant.js';
import { parseDurationSec } from '../duration.js';

export const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;

/** Paths in messages are relative to the working directory when below it, so they are clickable. */
export function displayPath(abs: string): string {
  const rel = path.relative(process.cwd(), abs);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : abs;
}

export type Entries = Map<string, Pair<Node, Node | null>>;

/** One parsed source file and the problems found in it. */
export class SourceFile {
  readonly display: string;
  constructor(
    readonly abs: string,
    readonly lc: LineCounter,
    private readonly errors: SourceError[],
    readonly text = '',
  ) {
    this.display = displayPath(abs);
  }

  fail(node: Node | null | undefined, field: string, problem: string): undefined {
    const p = this.lc.linePos(node?.range?.[0] ?? 0);
    this.errors.push(new SourceError(this.display, p.line, p.col, field, problem));
    return undefined;
  }

  where(node: Node | null | undefined): string {
    const p = this.lc.linePos(node?.range?.[0] ?? 0);
    return `${this.display}:${p.line}:${p.col}`;
  }

  /** A mapping's entries; unknown keys are reported, never ignored (a typo must not pass). */
  map(node: Node | null | undefined, field: string, allowed: readonly string[], what: string): Entries | undefined {
    if (!isMap(node)) return this.fail(node, field, `must be a mapping (${what})`);
    const out: Entries = new Map();
    for (const item of node.items as Pair<Node, Node | null>[]) {
      const key = item.key;
      if (!isScalar(key) || typeof key.value !== 'string') {
        this.fail(key, field, 'keys must be strings');
        continue;
      }
      if (!allowed.includes(key.value)) {
        const f = field === '' ? key.value : `${field}.${key.value}`;
        this.fail(key, f, `unknown field '${key.value}' (expected ${allowed.join(', ')})`);
        continue;
      }
      out.set(key.value, item);
    }
    return out;
  }

  /** A mapping with arbitrary string keys (bounds by point name). */
  freeMap(node: Node | null | undefined, field: string, what: string): Entries | undefined {
    if (!isMap(node)) return this.fail(node, field, `must be a mapping (${what})`);
    const out: Entries = new Map();
    for (const item of node.items as Pair<Node, Node | null>[]) {
      if (!isScalar(item.key) || typeof item.key.value !== 'string') {
        this.fail(item.key, field, 'keys must be strings');
        continue;
      }
      out.set(item.key.value, item);
    }
    return out;
  }

  seq(node: Node | null | undefined, field: string, what: string): (Node | null)[] | undefined {
    if (!isSeq(node)) return this.fail(node, field, `must be a list (${what})`);
    return node.items as (Node | null)[];
  }

  valueNode(pair: Pair<Node, Node | null>): Node {
    return pair.value ?? pair.key;
  }

  str(parent: Node, e: Entries, key: string, field: string, required: boolean): string | undefined {
    const pair = e.get(key);
    if (pair === undefined) return required ? this.fail(parent, field, 'is required') : undefined;
    return this.strNode(this.valueNode(pair), field);
  }

  strNode(n: Node | null, field: string): string | undefined {
    if (!isScalar(n) || typeof n.value !== 'string' || n.value === '') {
      return this.fail(n, field, 'must be a non-empty string');
    }
    return n.value;
  }

  int(parent: Node, e: Entries, key: string, field: string, min: number, max: number): number | undefined {
    const pair = e.get(key);
    if (pair === undefined) return this.fail(parent, field, 'is required');
    return this.intNode(this.valueNode(pair), field, min, max);
  }

  intNode(n: Node | null, field: string, min: number, max: number): number | undefined {
    if (!isScalar(n) || typeof n.value !== 'number' || !Number.isInteger(n.value)) {
      return this.fail(n, field, `must be an integer in ${min}..${max}`);
    }
    if (n.value < min || n.value > max) return this.fail(n, field, `${n.value} is outside ${min}..${max}`);
    return n.value;
  }

  num(e: Entries, key: string, field: string): number | undefined {
    const pair = e.get(key);
    if (pair === undefined) return undefined;
    const n = this.valueNode(pair);
    if (!isScalar(n) || typeof n.value !== 'number' || !Number.isFinite(n.value)) {
      return this.fail(n, field, 'must be a finite number');
    }
    return n.value;
  }

  oneOf<T extends string>(parent: Node, e: Entries, key: string, field: string, options: readonly T[]): T | undefined {
    const pair = e.get(key);
    if (pair === undefined) return this.fail(parent, field, `is required (one of ${options.join(', ')})`);
    return this.oneOfNode(this.valueNode(pair), field, options, 'value');
  }

  oneOfNode<T extends string>(n: Node | null, field: string, options: readonly T[], what: string): T | undefined {
    const v = isScalar(n) ? n.value : undefined;
    if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
      const shown = isScalar(n) ? `'${String(n.value)}'` : 'a collection';
      return this.fail(n, field, `unknown ${what} ${shown} (expected ${options.join(', ')})`);
    }
    return v as T;
  }

  duration(parent: Node, e: Entries, key: string, field: string): number | undefined {
    const s = this.str(parent, e, key, field, true);
    if (s === undefined) return undefined;
    const sec = parseDurationSec(s);
    if (sec === null) {
      return this.fail(this.valueNode(e.get(key)!), field, `bad duration '${s}' (expected a positive number followed by s, m, h or d, e.g. 15m)`);
    }
    return sec;
  }

  /** A string or a list of strings (globs, roles); a single string is accepted where a list is. */
  strList(n: Node | null, field: string, what: string): { value: string; node: Node }[] | undefined {
    const items = this.seq(n, field, what);
    if (items === undefined) return undefined;
    const out: { value: string; node: Node }[] = [];
    items.forEach((item, i) => {
      const v = this.strNode(item, `${field}[${i}]`);
      if (v !== undefined) out.push({ value: v, node: item! });
    });
    return out;
  }
}

interface Parsed {
  file: SourceFile;
  root: Node | null;
}

export async function parseFile(abs: string, errors: SourceError[], from?: { file: SourceFile; node: Node; field: string }): Promise<Parsed | undefined> {
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    if (from) return from.file.fail(from.node, from.field, `cannot read '${displayPath(abs)}' (${code})`);
    errors.push(new SourceError(displayPath(abs), 1, 1, 'file', `cannot read policy source (${code})`));
    return undefined;
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const file = new SourceFile(abs, lc, errors, text);
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const p = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
      errors.push(new SourceError(file.display, p.line, p.col, 'yaml', e.message.split('\n')[0]! + rangeSyntaxHint(text.split('\n', p.line)[p.line - 1])));
    }
    return undefined;
  }
  return { file, root: doc.contents as Node | null };
}
