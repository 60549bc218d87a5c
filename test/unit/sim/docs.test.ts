import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../../..');

describe('docs/simulator.md', () => {
  it('shows exactly the harness that make test runs (test/integration/sim/harness-example.test.ts)', () => {
    const doc = readFileSync(resolve(ROOT, 'docs/simulator.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## A complete vitest harness'));
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    const file = readFileSync(resolve(ROOT, 'test/integration/sim/harness-example.test.ts'), 'utf8');
    // The file's two header comment lines say where it is documented; the rest is the harness.
    expect(block).toBe(file.split('\n').slice(2).join('\n'));
  });
});
