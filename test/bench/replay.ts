// Policy learn / replay bench: `node dist/test/bench/replay.js [--quick] [--records N] [--replay-only]`. Writes a
// synthetic day of a busy gateway's audit (synthetic-audit.ts: 10 million records, 300,000 with
// --quick) as real spool segments, then runs the real CLI on it as a separate process, as an
// engineer would: `policy replay` against the demo bundle and `policy learn` (statistics pass, and
// with its check pass), and `policy replay` of the collector's NDJSON form of the first million
// records (--replay-only: the spool replay alone, for the memory figure of a full day on a shared
// machine). Prints records/s, records per CPU second and the process's peak RSS (the kernel's
// maxrss) for each; the aim (issue 25) is at least 200,000 records/s with memory that does not grow
// with the input. The target is judged per CPU second (the process's, every thread): on a machine
// shared with other work the wall-clock rate measures the neighbours, not replay.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/cli/demo/lab.js';
import { BIN_NODE_FLAGS } from './processes.js';
import { writeSyntheticNdjson, writeSyntheticSpool } from './synthetic-audit.js';

const quick = process.argv.includes('--quick');
const replayOnly = process.argv.includes('--replay-only');
const at = process.argv.indexOf('--records');
const RECORDS = at > 0 ? Number(process.argv[at + 1]) : quick ? 300_000 : 10_000_000;
const NDJSON_RECORDS = Math.min(RECORDS, 1_000_000);
const CLI = join(PACKAGE_ROOT, 'dist/src/cli/main.js');
const TARGET_PER_SEC = 200_000;

interface Measured {
  name: string;
  records: number;
  seconds: number;
  perSec: number;
  cpuSeconds: number;
  perCpuSec: number;
  peakRssMiB: number;
  note: string;
}

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...BIN_NODE_FLAGS, CLI, ...args], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function replay(name: string, from: string): Promise<Measured> {
  const r = await cli(['policy', 'replay', '--bundle', 'rules/demo/bundle.yaml', '--from', from, '--json', '--quiet', '--max-listed', '10']);
  if (r.code !== 0) throw new Error(`${name}: exit ${r.code}\n${r.stderr}`);
  const j = JSON.parse(r.stdout) as { records: number; seconds: number; records_per_sec: number; cpu_seconds: number; records_per_cpu_sec: number; peak_rss_bytes: number; summary: { commands: number; newly_denied: number; newly_allowed: number; interlock_unknown: number } };
  return {
    name,
    records: j.records,
    seconds: j.seconds,
    perSec: j.records_per_sec,
    cpuSeconds: j.cpu_seconds,
    perCpuSec: j.records_per_cpu_sec,
    peakRssMiB: j.peak_rss_bytes / (1 << 20),
    note: `${j.summary.commands.toLocaleString('en-US')} commands, ${j.summary.newly_denied} newly denied, ${j.summary.newly_allowed} newly allowed, ${j.summary.interlock_unknown.toLocaleString('en-US')} interlock unknown`,
  };
}

async function learn(name: string, from: string, outDir: string, check: boolean): Promise<Measured[]> {
  const r = await cli(['policy', 'learn', '--from', from, '--base', 'rules/demo/bundle.yaml', '--out', outDir, '--quiet', '--force', ...(check ? [] : ['--no-check'])]);
  if (r.code !== 0) throw new Error(`${name}: exit ${r.code}\n${r.stderr}\n${r.stdout}`);
  const read = /read\s+([\d,]+) records .* in ([\d.]+) s \(([\d.]+) s CPU\), ([\d,]+) records\/s, peak rss (\d+) MiB/.exec(r.stdout);
  if (!read) throw new Error(`${name}: unexpected output\n${r.stdout}`);
  const n = (s: string): number => Number(s.replace(/,/g, ''));
  const rules = /learned\s+(\d+) rules/.exec(r.stdout)?.[1] ?? '?';
  const records = n(read[1]!);
  const cpuSeconds = Number(read[3]);
  const out: Measured[] = [{ name, records, seconds: Number(read[2]), perSec: n(read[4]!), cpuSeconds, perCpuSec: cpuSeconds > 0 ? records / cpuSeconds : 0, peakRssMiB: Number(read[5]), note: `${rules} rules` }];
  if (check) out[0]!.note += `; check: ${/refuses ([\d,]+) learned/.exec(r.stdout)?.[1] ?? '?'} learned commands refused`;
  return out;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'plantgate-replay-bench-'));
  try {
    const spool = join(dir, 'spool');
    await import('node:fs/promises').then((fs) => fs.mkdir(spool));
    let t = performance.now();
    const bytes = await writeSyntheticSpool(spool, RECORDS);
    console.log(`synthetic spool: ${RECORDS.toLocaleString('en-US')} records, ${(bytes / (1 << 20)).toFixed(0)} MiB, written in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const results: Measured[] = [];
    results.push(await replay('replay, spool', spool));
    if (!replayOnly) {
      t = performance.now();
      const ndjson = join(dir, `${'bench-gw'}.ndjson`);
      const nbytes = await writeSyntheticNdjson(ndjson, NDJSON_RECORDS);
      console.log(`synthetic NDJSON: ${NDJSON_RECORDS.toLocaleString('en-US')} records, ${(nbytes / (1 << 20)).toFixed(0)} MiB, written in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      results.push(await replay('replay, collector NDJSON', ndjson));
      results.push(...(await learn('learn, spool (no check)', spool, join(dir, 'learned'), false)));
      results.push(...(await learn('learn + check, spool', spool, join(dir, 'learned'), true)));
    }
    console.log('');
    console.log(`load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${availableParallelism()} CPUs`);
    console.log(`${'run'.padEnd(28)} ${'records'.padStart(12)} ${'seconds'.padStart(8)} ${'records/s'.padStart(10)} ${'CPU s'.padStart(8)} ${'rec/CPU s'.padStart(10)} ${'peak RSS'.padStart(9)}  note`);
    for (const r of results) {
      const int = (n: number): string => Math.round(n).toLocaleString('en-US');
      console.log(`${r.name.padEnd(28)} ${int(r.records).padStart(12)} ${r.seconds.toFixed(1).padStart(8)} ${int(r.perSec).padStart(10)} ${r.cpuSeconds.toFixed(1).padStart(8)} ${int(r.perCpuSec).padStart(10)} ${`${r.peakRssMiB.toFixed(0)} MiB`.padStart(9)}  ${r.note}`);
    }
    const slow = results.filter((r) => r.perCpuSec < TARGET_PER_SEC && !r.name.startsWith('learn + check'));
    console.log('');
    console.log(slow.length === 0 ? `target met: every pass at >= ${TARGET_PER_SEC.toLocaleString('en-US')} records per CPU second` : `target MISSED (${TARGET_PER_SEC.toLocaleString('en-US')} records per CPU second): ${slow.map((r) => r.name).join(', ')}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
