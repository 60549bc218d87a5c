// The policy the gateway columns of the throughput bench run with: the bench bundle
// (rules/bench/bundle.yaml) plus 1,000 generated rules, compiled from the bench's temp dir.
// The extra rules look like a site's real policy: other lines' workloads, 20 other PLCs (water and
// heat-loop kinds on unit ids 2..21, in a generated plant file), their points, maintenance windows,
// bounds and rate limits, a fifth of them on the bench PLC itself. None matches the bench agents
// (spiffe://plant.example/agent/*), so the decisions are the bench bundle's, but the engine has to
// index them and find its way past them on every command, as it would in a plant.
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { PACKAGE_ROOT } from '../../src/cli/demo/lab.js';

const BENCH_ENTRY = 'rules/bench/bundle.yaml';

interface Kind {
  prefix: string;
  points: Record<string, { table: string; address: number; type: string; scale?: number }>;
  reads: string[];
  /** Writable points with their bounds in engineering units (undefined: no bounds, e.g. a coil). */
  writes: Record<string, { min: number; max: number } | undefined>;
}

// Two kinds of PLC a plant has many of; each extra asset is one of them on its own unit id.
const WATER: Kind = {
  prefix: 'wt',
  points: {
    'tank.level': { table: 'input', address: 0, type: 'uint16', scale: 0.1 },
    'tank.setpoint': { table: 'holding', address: 0, type: 'uint16', scale: 0.1 },
    'pump.speed': { table: 'holding', address: 1, type: 'uint16' },
    'pump.run': { table: 'coil', address: 0, type: 'bool' },
    'pump.running': { table: 'discrete', address: 0, type: 'bool' },
    'tank.high_alarm': { table: 'discrete', address: 1, type: 'bool' },
  },
  reads: ['tank.level', 'tank.setpoint', 'pump.speed', 'pump.running', 'tank.high_alarm'],
  writes: { 'tank.setpoint': { min: 20, max: 80 }, 'pump.speed': { min: 0, max: 1800 }, 'pump.run': undefined },
};
const HEAT: Kind = {
  prefix: 'hx',
  points: {
    'temp.pv': { table: 'input', address: 0, type: 'int16', scale: 0.1 },
    'valve.position': { table: 'input', address: 1, type: 'uint16', scale: 0.1 },
    'temp.setpoint': { table: 'holding', address: 0, type: 'int16', scale: 0.1 },
    'valve.command': { table: 'holding', address: 1, type: 'uint16', scale: 0.1 },
    'loop.auto': { table: 'coil', address: 0, type: 'bool' },
    'temp.high_alarm': { table: 'discrete', address: 0, type: 'bool' },
  },
  reads: ['temp.pv', 'valve.position', 'temp.setpoint', 'valve.command', 'temp.high_alarm'],
  writes: { 'temp.setpoint': { min: 20, max: 90 }, 'valve.command': { min: 0, max: 100 }, 'loop.auto': undefined },
};
const BENCH_POINTS = Array.from({ length: 10 }, (_, i) => `block.r${i}`);
const EXTRA_ASSETS = 20;

/**
 * Writes the entry file (the bench bundle with absolute paths, 20 more assets, two windows and an
 * include) and the include with `count` rules under `dir`; returns the entry file's path.
 */
export async function writeBenchRules(dir: string, count = 1000): Promise<string> {
  const entry = parse(await readFile(path.join(PACKAGE_ROOT, BENCH_ENTRY), 'utf8')) as Record<string, unknown>;
  const benchDir = path.dirname(path.join(PACKAGE_ROOT, BENCH_ENTRY));
  // The entry file moves to the temp dir: its relative paths become absolute.
  for (const issuer of entry.issuers as { jwks_file: string }[]) issuer.jwks_file = path.resolve(benchDir, issuer.jwks_file);
  for (const asset of entry.assets as { points_from?: string }[]) if (asset.points_from) asset.points_from = path.resolve(benchDir, asset.points_from);

  // The other PLCs of the site, on unit ids 2..21 (a bundle's unit ids are unique), in one plant file.
  const extraAssets = Array.from({ length: EXTRA_ASSETS }, (_, i) => {
    const kind = i % 2 === 0 ? WATER : HEAT;
    return { id: `${kind.prefix}-line${Math.floor(i / 2) + 1}`, unitId: i + 2, ...kind };
  });
  const plantFile = path.join(dir, 'extra-plant.yaml');
  const plant = { plant: 'bench-site', plcs: extraAssets.map((a) => ({ id: a.id, unit_id: a.unitId, points: a.points })) };
  (entry.assets as unknown[]).push(
    ...extraAssets.map((a, i) => ({
      id: a.id,
      zone: `line${Math.floor(i / 2) + 1}`,
      criticality: i % 3 === 0 ? 'high' : 'medium',
      protocol: 'modbus',
      unit_id: a.unitId,
      points_from: plantFile,
    })),
  );
  entry.windows = [
    { id: 'night-shift', time_zone: 'Europe/Berlin', days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '22:00', to: '06:00' },
    { id: 'weekend-maintenance', time_zone: 'America/Chicago', days: ['sat', 'sun'], from: '08:00', to: '16:00' },
  ];
  entry.include = ['extra-rules.yaml'];

  const rules: Record<string, unknown>[] = [];
  for (let i = 0; i < count; i++) {
    // Workloads of other production lines: never under spiffe://plant.example/agent/.
    const subject = { workload: `spiffe://plant.example/line${(i % 40) + 1}/agent-${i % 7}` };
    const onBenchPlc = i % 5 === 0;
    const asset = onBenchPlc ? undefined : extraAssets[i % extraAssets.length];
    const write = i % 10 >= 7;
    const rule: Record<string, unknown> = { id: `extra-${String(i).padStart(4, '0')}`, subject, asset: asset?.id ?? 'plc1', operations: [write ? 'write' : 'read'] };
    if (asset === undefined) {
      rule.points = [BENCH_POINTS[i % BENCH_POINTS.length]];
      if (write) rule.bounds = { [BENCH_POINTS[i % BENCH_POINTS.length]]: { min: 0, max: 1000 + i } };
    } else if (write) {
      const names = Object.keys(asset.writes);
      const point = names[i % names.length];
      rule.points = [point];
      const bounds = asset.writes[point];
      if (bounds !== undefined) rule.bounds = { [point]: bounds };
      if (i % 3 === 0) rule.rate_limit = { per_subject: '30/m' };
    } else {
      rule.points = [asset.reads[i % asset.reads.length], asset.reads[(i + 1) % asset.reads.length]];
    }
    if (i % 4 === 0) rule.windows = [i % 8 === 0 ? 'night-shift' : 'weekend-maintenance'];
    rules.push(rule);
  }
  await mkdir(dir, { recursive: true });
  await writeFile(plantFile, `# Generated by the throughput bench: the site's other PLCs.\n${stringify(plant, { aliasDuplicateObjects: false })}`);
  const entryFile = path.join(dir, 'bundle.yaml');
  await writeFile(entryFile, `# Generated by the throughput bench: ${BENCH_ENTRY} plus ${count} extra rules.\n${stringify(entry, { aliasDuplicateObjects: false })}`);
  await writeFile(path.join(dir, 'extra-rules.yaml'), `# Generated by the throughput bench (test/bench/extra-rules.ts).\n${stringify({ rules }, { aliasDuplicateObjects: false })}`);
  return entryFile;
}
