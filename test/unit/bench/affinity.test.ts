// The throughput bench measures one core against one core (docs/performance.md, How to measure):
// it pins the proxy under test to one CPU and its load to another with taskset. These tests hold
// the helpers to that: a running process is pinned with every one of its threads, and CPU lists
// are read the way Linux writes them.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { affinityOf, parseCpuList, setAffinity } from '../../bench/processes.js';

describe('bench CPU placement', () => {
  it('reads Linux CPU lists with ranges and single CPUs', () => {
    expect(parseCpuList('0-1')).toEqual([0, 1]);
    expect(parseCpuList('0-2,5,7-8\n')).toEqual([0, 1, 2, 5, 7, 8]);
    expect(parseCpuList('3')).toEqual([3]);
    expect(() => parseCpuList('0-x')).toThrow(/not a CPU list/);
  });

  it('pins every thread of a running Node process to one CPU and unpins it again', async () => {
    const allowed = affinityOf(process.pid);
    const cpu = allowed[allowed.length - 1];
    // A Node process has threads besides its main thread (V8 platform workers, libuv).
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000); console.log("up")'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
      const pid = child.pid!;
      const threads = () => readdirSync(`/proc/${pid}/task`).map(Number);
      expect(threads().length).toBeGreaterThan(1);

      expect(setAffinity(pid, String(cpu))).toBeUndefined();
      for (const tid of threads()) expect(affinityOf(pid, tid)).toEqual([cpu]);

      expect(setAffinity(pid, allowed.join(','))).toBeUndefined();
      for (const tid of threads()) expect(affinityOf(pid, tid)).toEqual(allowed);
    } finally {
      child.kill();
    }
  });

  it('says why it cannot pin a process that does not exist', () => {
    expect(setAffinity(2 ** 22 + 12345, '0')).toMatch(/taskset/);
  });
});
