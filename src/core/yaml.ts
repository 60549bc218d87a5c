// The one way plantgate reads YAML a human wrote (docs/architecture.md, Human-written files): the
// text is parsed with positions (readYaml), and every problem becomes a SourceError naming file,
// line, column and field. Two ways to check the shape sit on that one reading: a zod schema
// (parseYamlWith: configuration files, flat shapes owned by the module that owns the file) and
// positioned field checks (YamlFields: the policy, plant and interlock languages, whose checks
// need each other's results — ids, points, assets — as they go).
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Document, type Node, type Pair, type YAMLMap } from 'yaml';
import type { z } from 'zod';
import { SourceError, SourceErrors } from './errors.js';

type Path = ReadonlyArray<PropertyKey>;

export function fieldName(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out === '' ? '(top level)' : out;
}

/** The deepest node that exists along the path, so a missing field points at its parent. */
function nodeAt(doc: Document, path: Path): Node | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true) as Node | undefined;
    if (node && typeof node === 'object' && 'range' in node) return node;
  }
  return doc.contents ?? undefined;
}

function keyNodeAt(doc: Document, path: Path, key: string): Node | undefined {
  const parent = doc.getIn(path as unknown[], true);
  if (isMap(parent)) {
    for (const item of parent.items) {
      if (isScalar(item.key) && item.key.value === key) return item.key;
    }
  }
  return nodeAt(doc, path);
}

/**
 * Where a field sits in a YAML text (its node's line and column, or its nearest parent's), for
 * problems found after the schema passed (a file the field names that cannot be read).
 */
export function yamlLocator(text: string): (path: Path) => { line: number; col: number } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  return (path) => lc.linePos(nodeAt(doc, path)?.range?.[0] ?? 0);
}

/** A YAML text parsed with positions, or the problems of its syntax (`hint` adds to a line's message). */
export function readYaml(
  text: string,
  file: string,
  hint: (line: string | undefined) => string = () => '',
): { ok: true; doc: Document; lc: LineCounter } | { ok: false; errors: SourceError[] } {
  const lc = new LineCounter();
  // Duplicate keys are an error in every file: the second would silently win.
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length === 0) return { ok: true, doc, lc };
  const lines = text.split('\n');
  return {
    ok: false,
    errors: doc.errors.map((e) => {
      const p = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
      return new SourceError(file, p.line, p.col, 'yaml', e.message.split('\n')[0]! + hint(lines[p.line - 1]));
    }),
  };
}

export function parseYamlWith<S extends z.ZodType>(schema: S, text: string, file: string): z.output<S> {
  const read = readYaml(text, file);
  if (!read.ok) throw new SourceErrors(read.errors);
  const { doc, lc } = read;
  const at = (node: Node | undefined) => lc.linePos(node?.range?.[0] ?? 0);
  const result = schema.safeParse(doc.toJS());
  if (result.success) return result.data;
  const errors: SourceError[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const p = at(keyNodeAt(doc, issue.path, key));
        errors.push(new SourceError(file, p.line, p.col, fieldName([...issue.path, key]), 'unknown field'));
      }
      continue;
    }
    const p = at(nodeAt(doc, issue.path));
    errors.push(new SourceError(file, p.line, p.col, fieldName(issue.path), issue.message));
  }
  throw new SourceErrors(errors);
}

export type Entries = Map<string, Pair<Node, Node | null>>;

/**
 * Positioned field checks over a parsed YAML tree: each check returns the value, or records a
 * SourceError at the node (or its parent, for a missing field) and returns undefined, so one run
 * reports every problem of a file. Unknown keys are reported, never ignored (a typo must not pass).
 */
export class YamlFields {
  constructor(
    /** The file as messages name it. */
    readonly display: string,
    readonly lc: LineCounter,
    protected readonly errors: SourceError[],
  ) {}

  fail(node: Node | null | undefined, field: string, problem: string): undefined {
    const p = this.lc.linePos(node?.range?.[0] ?? 0);
    this.errors.push(new SourceError(this.display, p.line, p.col, field, problem));
    return undefined;
  }

  /** file:line:col of a node, for messages that point at a second place. */
  where(node: Node | null | undefined): string {
    const p = this.lc.linePos(node?.range?.[0] ?? 0);
    return `${this.display}:${p.line}:${p.col}`;
  }

  errorCount(): number {
    return this.errors.length;
  }

  requireMap(node: Node | null | undefined, field: string, what: string): YAMLMap | undefined {
    if (!isMap(node)) return this.fail(node, field, `must be a mapping (${what})`);
    return node;
  }

  /** A mapping's entries, keyed by string; `allowed` names the keys it may have. */
  map(node: Node | null | undefined, field: string, allowed: readonly string[], what: string): Entries | undefined {
    const map = this.requireMap(node, field, what);
    return map === undefined ? undefined : this.entries(map, field, allowed);
  }

  /** A mapping with arbitrary string keys (bounds by point name, points by name). */
  freeMap(node: Node | null | undefined, field: string, what: string): Entries | undefined {
    const map = this.requireMap(node, field, what);
    return map === undefined ? undefined : this.entries(map, field, null);
  }

  /** The entries of a mapping already known to be one; `allowed` null takes any string key. */
  entries(map: YAMLMap, field: string, allowed: readonly string[] | null): Entries {
    const out: Entries = new Map();
    for (const item of map.items as Pair<Node, Node | null>[]) {
      const key = item.key;
      if (!isScalar(key) || typeof key.value !== 'string') {
        this.fail(key, field, 'keys must be strings');
        continue;
      }
      if (allowed !== null && !allowed.includes(key.value)) {
        this.fail(key, field === '' ? key.value : `${field}.${key.value}`, `unknown field '${key.value}' (expected ${allowed.join(', ')})`);
        continue;
      }
      out.set(key.value, item);
    }
    return out;
  }

  seq(node: Node | null | undefined, field: string, what: string): (Node | null)[] | undefined {
    if (!isSeq(node)) return this.fail(node, field, `must be a list (${what})`);
    return node.items as (Node | null)[];
  }

  /** The value of an entry, or its key when the value is empty (so a problem still has a position). */
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

  /** A finite number; `dflt` when absent (else undefined); `nonZero` refuses 0 (a divisor, a scale). */
  num(e: Entries, key: string, field: string, opts: { dflt?: number; nonZero?: boolean } = {}): number | undefined {
    const pair = e.get(key);
    if (pair === undefined) return opts.dflt;
    const n = this.valueNode(pair);
    if (!isScalar(n) || typeof n.value !== 'number' || !Number.isFinite(n.value)) {
      return this.fail(n, field, 'must be a finite number');
    }
    if (opts.nonZero === true && n.value === 0) return this.fail(n, field, 'must not be 0');
    return n.value;
  }

  /** One of `options`; `dflt` when absent, else required. */
  oneOf<T extends string>(parent: Node, e: Entries, key: string, field: string, options: readonly T[], dflt?: T): T | undefined {
    const pair = e.get(key);
    if (pair === undefined) return dflt ?? this.fail(parent, field, `is required (one of ${options.join(', ')})`);
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

  /** A list of strings (globs, roles). */
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
