// The direction of dependencies (docs/architecture.md, "Parts and their direction"), held by a test:
// the import graph between areas (src/<part>, protocols/<part>) read from the sources themselves.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '../../..');

function area(file: string): string {
  const [top, part] = path.relative(root, file).split(path.sep);
  return `${top}/${part}`;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'gen' ? [] : sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** area → areas it imports (static `from '...'` imports, type-only ones included: they couple too). */
function importGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const file of [...sources(path.join(root, 'src')), ...sources(path.join(root, 'protocols'))]) {
    const from = area(file);
    for (const m of readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
      const to = area(path.resolve(path.dirname(file), m[1]!));
      if (to === from) continue;
      if (!graph.has(from)) graph.set(from, new Set());
      graph.get(from)!.add(to);
    }
  }
  return graph;
}

/** Strongly connected components with more than one area (Tarjan): each is an import cycle. */
function cycles(graph: Map<string, Set<string>>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

describe('the import graph between areas', () => {
  const graph = importGraph();

  it('has no arrow from policy to a protocol front or to the simulator', () => {
    const arrows = [...(graph.get('src/policy') ?? [])].filter((to) => to.startsWith('protocols/') || to === 'src/sim').sort();
    expect(arrows).toEqual([]);
  });

  it('has no import cycle between areas', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('keeps core free of imports of any other area', () => {
    expect([...(graph.get('src/core') ?? [])]).toEqual([]);
  });

  it('keeps the Modbus and OPC UA fronts free of policy and interlocks (readers are a core seam)', () => {
    for (const front of ['protocols/modbus', 'protocols/opcua']) {
      expect([...(graph.get(front) ?? [])].filter((to) => to === 'src/policy' || to === 'src/interlocks'), front).toEqual([]);
    }
  });

  it('keeps the interlocks free of every protocol: live values come through the core reader seams', () => {
    expect([...(graph.get('src/interlocks') ?? [])].filter((to) => to.startsWith('protocols/'))).toEqual([]);
  });

  it('keeps the asset format free of policy, the simulator and the protocol fronts', () => {
    expect([...(graph.get('src/assets') ?? [])]).toEqual(['src/core']);
  });

  it('lets a protocol front ask policy only through the bundle payload and the reach query (the MCP tool catalog)', () => {
    const allowed = new Set(['src/policy/payload.ts', 'src/policy/reach.ts']);
    const used = sources(path.join(root, 'protocols')).flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)]
        .map((m) => path.relative(root, path.resolve(path.dirname(file), m[1]!)).replace(/\.js$/, '.ts'))
        .filter((to) => to.startsWith('src/policy/') && !allowed.has(to))
        .map((to) => `${path.relative(root, file)} -> ${to}`),
    );
    expect(used).toEqual([]);
  });

  it('reads human-written YAML in one place: src/core/yaml.ts parses, every checker works on what it read', () => {
    // learn/emit.ts edits rule files it writes back (round-trip, comments kept); it validates nothing.
    const allowed = new Set(['src/core/yaml.ts', 'src/policy/learn/emit.ts']);
    const parsing = [...sources(path.join(root, 'src')), ...sources(path.join(root, 'protocols'))]
      .filter((file) => /\b(parseDocument|parseAllDocuments|YAML\.parse)\(|import \{[^}]*\bparse\b[^}]*\} from 'yaml'/.test(readFileSync(file, 'utf8')))
      .map((file) => path.relative(root, file))
      .filter((file) => !allowed.has(file));
    expect(parsing).toEqual([]);
  });
});
