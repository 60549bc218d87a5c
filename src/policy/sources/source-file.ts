// Reading one policy source file: YAML with line positions (src/core/yaml.ts, the one reading of
// human-written YAML) and its field checks, plus what policy sources add (durations in seconds,
// paths relative to the working directory). Part of the rule compiler (src/policy/sources.ts);
// never decides policy.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { LineCounter, Node } from 'yaml';
import { SourceError } from '../../core/errors.js';
import { readYaml, YamlFields, type Entries } from '../../core/yaml.js';
import { rangeSyntaxHint } from '../../assets/plant.js';
import { parseDurationSec } from '../duration.js';

export const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;

/** Paths in messages are relative to the working directory when below it, so they are clickable. */
export function displayPath(abs: string): string {
  const rel = path.relative(process.cwd(), abs);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : abs;
}

export type { Entries };

/** One parsed policy source file and the problems found in it. */
export class SourceFile extends YamlFields {
  constructor(
    readonly abs: string,
    lc: LineCounter,
    errors: SourceError[],
    readonly text = '',
  ) {
    super(displayPath(abs), lc, errors);
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
  const read = readYaml(text, displayPath(abs), rangeSyntaxHint);
  if (!read.ok) {
    errors.push(...read.errors);
    return undefined;
  }
  return { file: new SourceFile(abs, read.lc, errors, text), root: read.doc.contents as Node | null };
}
