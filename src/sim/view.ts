// The compact live terminal view of `plantgate sim --view`: one line per point (value, unit,
// sensor fault marker), active faults, request counters. Pure rendering to a string; the CLI owns
// the terminal and the refresh timer.
import type { SimHandle } from './modbus-server.js';

function fmt(v: number | string, type: string): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (type === 'bool') return v !== 0 ? 'ON' : 'off';
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(2);
}

function describeFault(spec: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(spec)) {
    if (k === 'kind' || v === undefined) continue;
    parts.push(`${k}=${Array.isArray(v) ? v.join(',') : String(v)}`);
  }
  return parts.join(' ');
}

/** The view as text lines (no ANSI codes), at most `width` columns wide. */
export function renderView(sim: SimHandle, width = 100): string {
  const lines: string[] = [];
  const t = new Date(sim.clock.now()).toISOString().replace('T', ' ').replace('Z', '');
  lines.push(`plant ${sim.plant.name}  ${t}${sim.runtime.manual ? ' (step mode)' : ''}  seed ${sim.runtime.seed}  requests ${sim.requestCount()}`);
  const points = sim.points();
  const nameW = Math.min(Math.max(...points.map((p) => p.name.length), 4), 32);
  for (const ep of sim.endpoints) {
    lines.push(`${ep.plc} unit ${ep.unitId}  ${ep.url}`);
    for (const p of points) {
      if (p.plc !== ep.plc) continue;
      const mark = p.value !== p.trueValue ? `  (process ${fmt(p.trueValue, p.type)})` : '';
      const addr = `${p.table}:${p.address}`;
      lines.push(`  ${p.name.padEnd(nameW)} ${fmt(p.value, p.type).padStart(9)} ${(p.unit ?? '').padEnd(4)} ${addr.padEnd(14)}${mark}`);
    }
  }
  const faults = sim.faults();
  lines.push(faults.length === 0 ? 'faults: none' : `faults (${faults.length}):`);
  for (const f of faults) lines.push(`  ${f.id} ${f.spec.kind} ${describeFault(f.spec as Record<string, unknown>)}  hits ${f.hits}`);
  return lines.map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l)).join('\n');
}
