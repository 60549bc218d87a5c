// Reads a YAML file a human wrote and validates it against a zod schema, turning every problem
// into a SourceError that names file, line, column and field. Used for configuration files; the
// shape lives with the module that owns the file.
import { LineCounter, isMap, isScalar, parseDocument, type Document, type Node } from 'yaml';
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

export function parseYamlWith<S extends z.ZodType>(schema: S, text: string, file: string): z.output<S> {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const at = (node: Node | undefined) => lc.linePos(node?.range?.[0] ?? 0);
  if (doc.errors.length > 0) {
    throw new SourceErrors(
      doc.errors.map((e) => {
        const p = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
        return new SourceError(file, p.line, p.col, 'yaml', e.message.split('\n')[0]);
      }),
    );
  }
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
