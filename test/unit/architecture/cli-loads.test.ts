// What `plantgate serve` carries in memory is what the CLI loads before it runs a command: every
// command's module and their static imports. The demo lab (simulator, agents and their Modbus
// client), the collector and the NATS client are loaded by the command that runs them, or by the
// gateway when its configuration asks for them (docs/performance.md, Session 7: ~13 MB of the
// gateway's RSS). Held here on the static import graph read from the sources.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '../../..');

/** Files and packages reachable from `entry` through static imports that stay after compilation. */
function staticallyLoaded(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string): void => {
    if (files.has(file)) return;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?'([^']+)'/gm)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) {
        const target = path.resolve(path.dirname(file), spec).replace(/\.js$/, '');
        visit(readable(target));
      } else if (!spec.startsWith('node:')) packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  };
  visit(path.join(root, entry));
  return { files, packages };
}

function readable(base: string): string {
  for (const ext of ['.ts', '.js']) {
    try {
      readFileSync(base + ext);
      return base + ext;
    } catch {
      // try the next extension
    }
  }
  throw new Error(`cannot resolve ${base}`);
}

describe('what the plantgate CLI loads before a command runs', () => {
  const { files, packages } = staticallyLoaded('src/cli/main.ts');
  const rel = [...files].map((f) => path.relative(root, f));

  it('leaves the demo lab, the simulator, the collector and their clients to their commands', () => {
    expect(rel.filter((f) => /^src\/(cli\/demo|sim|collector\/(server|jetstream))\b/.test(f))).toEqual([]);
    expect([...packages].filter((p) => ['nats', 'modbus-serial', 'node-opcua'].includes(p))).toEqual([]);
  });

  it('follows the imports (the gateway and its policy are loaded)', () => {
    expect(rel).toContain('src/gateway/gateway.ts');
    expect(packages).toContain('protobufjs');
  });
});
