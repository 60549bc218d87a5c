// The suite's own health, held by a test: a test file never asserts on the wall clock (how long
// something took belongs in `make bench`; a busy machine fails such tests for no fault of the code),
// and nothing is focused or skipped. Reads every test file as text; bench files are not tests.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const testRoot = path.resolve(__dirname, '..');

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'bench' ? [] : testFiles(p);
    return e.name.endsWith('.test.ts') ? [p] : [];
  });
}

/** `file:line: text` of every expectation on a wall-clock reading or a duration computed from one. */
function wallClockAssertions(file: string, text: string): string[] {
  const lines = text.split('\n');
  // Names holding a duration: `const elapsed = performance.now() - t0`, `… (Date.now() - start) / n`.
  const durations = new Set<string>();
  for (const m of text.matchAll(/(?:const|let)\s+(\w+)\s*=\s*\(*\s*(?:performance\.now\(\)|Date\.now\(\)|process\.hrtime[^-;\n]*)\s*-\s*\w/g)) durations.add(m[1]!);
  const found: string[] = [];
  lines.forEach((line, i) => {
    for (const m of line.matchAll(/expect\(([^;]*)/g)) {
      const arg = m[1]!;
      const onClock = /performance\.now\(\)|hrtime/.test(arg) || /Date\.now\(\)\s*-/.test(arg) || [...durations].some((d) => new RegExp(`\\b${d}\\b`).test(arg));
      if (onClock) found.push(`${path.relative(testRoot, file)}:${i + 1}: ${line.trim()}`);
    }
  });
  return found;
}

describe('test suite health', () => {
  // This file holds examples of what it refuses.
  const files = testFiles(testRoot).filter((f) => f !== __filename);

  it('finds the test files it checks', () => {
    expect(files.length).toBeGreaterThan(50);
  });

  it('asserts nothing on the wall clock in any test (durations are measured by make bench)', () => {
    expect(files.flatMap((f) => wallClockAssertions(f, readFileSync(f, 'utf8')))).toEqual([]);
  });

  it('spots an expectation on a measured duration, direct or through a variable', () => {
    const sample = ['const t0 = performance.now();', 'const took = (performance.now() - t0) / 1000;', 'expect(took).toBeLessThan(100);', 'expect(performance.now() - t0).toBeGreaterThanOrEqual(95);', 'expect(r.kind).toBe(1);'].join('\n');
    expect(wallClockAssertions(path.join(testRoot, 'x.test.ts'), sample)).toEqual(['x.test.ts:3: expect(took).toBeLessThan(100);', 'x.test.ts:4: expect(performance.now() - t0).toBeGreaterThanOrEqual(95);']);
  });

  it('has no focused or skipped test', () => {
    const marked = files.flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .flatMap((line, i) => (/\b(?:it|describe|test)\.(?:only|skip|todo)\(|\bx(?:it|describe)\(/.test(line) ? [`${path.relative(testRoot, f)}:${i + 1}`] : [])),
    );
    expect(marked).toEqual([]);
  });

  it('mocks no module and stubs no global (worker processes are shared between files: vitest.config.ts, isolate)', () => {
    const stubs = files.flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .flatMap((line, i) => (/\bvi\.(?:mock|doMock|stubGlobal|stubEnv|useFakeTimers)\(/.test(line) ? [`${path.relative(testRoot, f)}:${i + 1}`] : [])),
    );
    expect(stubs).toEqual([]);
  });
});
