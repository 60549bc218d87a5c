// Policy decision bench: `node dist/test/bench/policy.js [--quick]`. For bundles of 100, 1,000 and
// 10,000 rules (one asset of 200 points, 1 in 10 agents per rule group, a few glob rules, bounds,
// a window), prints decisions per second and the p50/p99 latency of single decisions. The aim
// (issue 9) is p99 <= 5 us at 10,000 rules.
import type { Command, Subject } from '../../src/core/command.js';
import { PolicyEngine } from '../../src/policy/engine.js';
import type { BundlePayload, BundleRule, PointDef } from '../../src/policy/payload.js';
import { resolveModbus } from '../resolve.js';

const quick = process.argv.includes('--quick');
const SIZES = [100, 1_000, 10_000];
const DECISIONS = quick ? 50_000 : 300_000;
const POINTS = 200;
const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

function payload(rules: number): BundlePayload {
  const points: Record<string, PointDef> = {};
  for (let i = 0; i < POINTS; i++) points[`p${i}`] = { table: 'holding', address: i, type: 'uint16', scale: 0.1 };
  const agents = Math.max(1, Math.floor(rules / 10));
  const list: BundleRule[] = [
    { id: 'read-all', description: '', subject: { workload: 'spiffe://plant.example/agent/*', roles: [] }, assets: ['plc1'], operations: ['read'], points: ['*'], ranges: [], bounds: {} },
    { id: 'night-maint', description: '', subject: { workload: 'spiffe://plant.example/maint/**', roles: ['maintainer'] }, assets: ['plc1'], operations: ['write'], points: ['p1*'], ranges: [], bounds: {}, windows: ['night'] },
  ];
  for (let i = list.length; i < rules; i++) {
    const p = `p${i % POINTS}`;
    list.push({
      id: `r${i}`,
      description: '',
      subject: { workload: `spiffe://plant.example/agent/a${i % agents}`, roles: [] },
      assets: ['plc1'],
      operations: ['write'],
      points: [p],
      ranges: [],
      bounds: { [p]: { min: 0, max: 100 } },
    });
  }
  return {
    format: 1, name: `bench-${rules}`, revision: 1, issued_at: NOW / 1000, not_before: NOW / 1000, expires_at: NOW / 1000 + 86400,
    audience: 'bench', limits: { max_token_ttl_sec: 900 }, issuers: [],
    assets: [{ id: 'plc1', zone: 'bench', criticality: 'low', protocol: 'modbus', unit_id: 1, points }],
    rules: list,
    windows: [{ id: 'night', time_zone: 'Europe/Berlin', from: '22:00', to: '06:00' }],
  };
}

function subject(workloadId: string): Subject {
  return { workloadId, owner: 'ops', taskId: 't', taskPurpose: 'bench', jti: 'j', roles: ['maintainer'], scopes: ['read', 'write'], assurance: 'mtls+token', issuer: 'i', expiresAtMs: NOW + 600_000, issuedAtMs: NOW };
}

function workload(engine: PolicyEngine, rules: number): { cmd: Command; s: Subject }[] {
  const agents = Math.max(1, Math.floor(rules / 10));
  const out: { cmd: Command; s: Subject }[] = [];
  for (let k = 0; k < 1024; k++) {
    const i = (k * 7919) % rules;
    const kind = k % 4;
    const read = kind === 0;
    const addr = kind === 3 ? 17 : i % POINTS;
    const cmd: Command = { sessionId: 's', protocol: 'modbus', assetId: '', operation: read ? 'read' : 'write', functionCode: read ? 3 : 6, targets: [{ table: 'holding', address: addr, count: 1 }], points: [] };
    if (!read) cmd.rawValues = [k % 3 === 0 ? 2000 : 500]; // some out of bounds
    resolveModbus(engine, cmd, 1);
    const who = kind === 3 ? 'spiffe://plant.example/maint/site/laptop' : `spiffe://plant.example/agent/a${i % agents}`;
    out.push({ cmd, s: subject(who) });
  }
  return out;
}

function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
}

/** Decisions per second over the workload (its own function: V8 optimises it as a whole, where
 * a loop at module level runs on-stack-replaced code that a late deopt can leave slow). */
function throughput(engine: PolicyEngine, work: { cmd: Command; s: Subject }[]): { perSec: number; allowed: number } {
  let allowed = 0;
  const start = performance.now();
  for (let i = 0; i < DECISIONS; i++) {
    const w = work[i & 1023]!;
    if (engine.decide(w.cmd, w.s, NOW + i).effect === 'allow') allowed++;
  }
  return { perSec: DECISIONS / ((performance.now() - start) / 1000), allowed };
}

/** Latency of single decisions, in µs, sorted. */
function latencies(engine: PolicyEngine, work: { cmd: Command; s: Subject }[]): Float64Array {
  const lat = new Float64Array(DECISIONS);
  for (let i = 0; i < DECISIONS; i++) {
    const w = work[i & 1023]!;
    // performance.now() allocates nothing (hrtime.bigint() does, and its GC would show up as p99).
    const a = performance.now();
    engine.decide(w.cmd, w.s, NOW + i);
    lat[i] = (performance.now() - a) * 1000;
  }
  return lat.sort();
}

console.log(`policy decisions (${quick ? 'quick' : 'full'} run, ${DECISIONS} decisions per size, node ${process.version})`);
console.log('rules     compile ms   decisions/s   p50 us   p99 us   allow %');
for (const n of SIZES) {
  const t0 = performance.now();
  const engine = PolicyEngine.fromPayload(payload(n));
  const compileMs = performance.now() - t0;
  const work = workload(engine, n);
  throughput(engine, work); // warm up the JIT on the same functions that are measured
  latencies(engine, work);
  const { perSec, allowed } = throughput(engine, work);
  const lat = latencies(engine, work);
  console.log(
    `${String(n).padStart(6)}   ${compileMs.toFixed(1).padStart(10)}   ${Math.round(perSec).toLocaleString('en-US').padStart(11)}   ${percentile(lat, 0.5).toFixed(2).padStart(6)}   ${percentile(lat, 0.99).toFixed(2).padStart(6)}   ${((allowed / DECISIONS) * 100).toFixed(0).padStart(7)}`,
  );
}
