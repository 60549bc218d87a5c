// Scenarios: YAML timelines run against a running plant ("at 30 s the inlet valve sticks; at 60 s
// pump1 trips"). Owns the scenario file format (validated against the plant, errors as
// file:line:column: field) and the runner, which fires each step on the plant's clock — so a
// scenario is as deterministic as the clock: exact under a ManualClock, compressed under --speed.
// Every step is logged and recorded. Never touches sockets itself; it acts through the SimHandle.
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { SourceError, SourceErrors } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { parseDurationMs } from '../core/duration.js';
import { parseYamlWith } from '../core/yaml.js';
import { FaultSpecSchema } from './faults.js';
import type { SimHandle } from './modbus-server.js';
import { findPoint, type Plant } from '../assets/plant.js';

const SCENARIO_DURATION = { units: ['ms', 's', 'min', 'h'], fractions: true, spaces: true, zero: true } as const;

/** "250ms", "30s", "1.5min", "2h", or a number of seconds (src/core/duration.ts). */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  return parseDurationMs(value, SCENARIO_DURATION) ?? undefined;
}

const Duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a duration (e.g. 500ms, 30s, 1.5min, 2h, or seconds)` });
    return z.NEVER;
  }
  return ms;
});

const LABEL = /^[A-Za-z_][A-Za-z0-9_-]*$/;

function schemaFor(plant: Plant) {
  const pointName = z.string().refine((n) => findPoint(plant, n) !== undefined, { message: `is not a point of plant ${plant.name}` });
  const fault = FaultSpecSchema.superRefine((f, ctx) => {
    const s = f as { point?: string; points?: string[]; plc?: string };
    if (s.point !== undefined && findPoint(plant, s.point) === undefined) ctx.addIssue({ code: 'custom', path: ['point'], message: `is not a point of plant ${plant.name}` });
    s.points?.forEach((p, i) => {
      if (findPoint(plant, p) === undefined) ctx.addIssue({ code: 'custom', path: ['points', i], message: `is not a point of plant ${plant.name}` });
    });
    if (s.plc !== undefined && !plant.plcs.some((p) => p.id === s.plc)) ctx.addIssue({ code: 'custom', path: ['plc'], message: `is not a PLC of plant ${plant.name}` });
  });
  const step = z
    .strictObject({
      at: Duration,
      note: z.string().optional(),
      /** Points to set, engineering units. */
      set: z
        .record(pointName, z.number().finite(), { error: (iss) => (iss.code === 'invalid_key' ? iss.issues?.[0]?.message : undefined) })
        .optional(),
      fault: fault.optional(),
      /** Names this step's fault so a later step can clear it. */
      label: z.string().regex(LABEL).optional(),
      /** A label from an earlier fault step, or "all". */
      clear: z.string().optional(),
      drop_connections: z.literal(true).optional(),
    })
    .superRefine((s, ctx) => {
      if (s.set === undefined && s.fault === undefined && s.clear === undefined && s.drop_connections === undefined) {
        ctx.addIssue({ code: 'custom', path: [], message: 'needs an action: set, fault, clear or drop_connections' });
      }
      if (s.label !== undefined && s.fault === undefined) ctx.addIssue({ code: 'custom', path: ['label'], message: 'names a fault, so the step needs fault' });
    });
  return z
    .strictObject({
      scenario: z.string().min(1),
      description: z.string().optional(),
      steps: z.array(step).min(1),
    })
    .superRefine((sc, ctx) => {
      const labels = new Set<string>();
      let last = 0;
      sc.steps.forEach((s, i) => {
        if (s.at < last) ctx.addIssue({ code: 'custom', path: ['steps', i, 'at'], message: 'steps must be in time order' });
        last = s.at;
        if (s.clear !== undefined && s.clear !== 'all' && !labels.has(s.clear)) {
          ctx.addIssue({ code: 'custom', path: ['steps', i, 'clear'], message: `"${s.clear}" is not the label of an earlier fault step (or "all")` });
        }
        if (s.label !== undefined) {
          if (labels.has(s.label)) ctx.addIssue({ code: 'custom', path: ['steps', i, 'label'], message: `duplicate label "${s.label}"` });
          labels.add(s.label);
        }
      });
    });
}

export type Scenario = z.output<ReturnType<typeof schemaFor>> & { file: string };
export type ScenarioStep = Scenario['steps'][number];

/** Parses and validates a scenario against the plant it will run on. */
export function parseScenario(text: string, file: string, plant: Plant): Scenario {
  return { ...parseYamlWith(schemaFor(plant), text, file), file };
}

export async function loadScenario(file: string, plant: Plant): Promise<Scenario> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SourceErrors([new SourceError(file, 1, 1, 'file', `cannot read scenario file (${(err as NodeJS.ErrnoException).code ?? 'error'})`)]);
  }
  return parseScenario(text, file, plant);
}

export interface StepRecord {
  index: number;
  /** Scenario time of the step, ms since the run started. */
  atMs: number;
  /** Plant clock time it ran. */
  ranAtMs: number;
  note: string | undefined;
  actions: string[];
  /** Set when an action failed (the run goes on: a harness sees it here and in the log). */
  error?: string;
}

export interface ScenarioRun {
  readonly records: StepRecord[];
  /** Resolves after the last step ran. */
  readonly done: Promise<StepRecord[]>;
  stop(): void;
}

/** Runs a scenario on a plant from now on its clock. Steps at 0 run before this returns. */
export function runScenario(sim: SimHandle, scenario: Scenario, logger: Logger = silentLogger, onStep?: (r: StepRecord) => void): ScenarioRun {
  const start = sim.clock.now();
  const records: StepRecord[] = [];
  const labels = new Map<string, string>();
  let next = 0;
  let finish!: (r: StepRecord[]) => void;
  const done = new Promise<StepRecord[]>((resolve) => (finish = resolve));

  const runStep = (index: number, step: ScenarioStep, now: number): void => {
    const rec: StepRecord = { index, atMs: step.at, ranAtMs: now, note: step.note, actions: [] };
    try {
      if (step.clear !== undefined) {
        if (step.clear === 'all') rec.actions.push(`cleared ${sim.clearFaults()} faults`);
        else {
          const id = labels.get(step.clear);
          rec.actions.push(id !== undefined && sim.clearFault(id) ? `cleared ${step.clear} (${id})` : `${step.clear} was no longer active`);
        }
      }
      for (const [name, value] of Object.entries(step.set ?? {})) {
        sim.write(name, value);
        rec.actions.push(`set ${name} = ${value}`);
      }
      if (step.fault !== undefined) {
        const f = sim.inject(step.fault);
        if (step.label !== undefined) labels.set(step.label, f.id);
        rec.actions.push(`fault ${f.id} ${step.fault.kind}${step.label !== undefined ? ` (${step.label})` : ''}`);
      }
      if (step.drop_connections === true) rec.actions.push(`dropped ${sim.dropConnections()} connections`);
    } catch (err) {
      rec.error = (err as Error).message;
    }
    records.push(rec);
    const line = { scenario: scenario.scenario, step: index, at: `${step.at / 1000}s`, actions: rec.actions, error: rec.error };
    if (rec.error !== undefined) logger.error(line, step.note ?? 'scenario step failed');
    else logger.info(line, step.note ?? 'scenario step');
    onStep?.(rec);
  };

  const poll = (now: number): void => {
    while (next < scenario.steps.length && start + scenario.steps[next].at <= now) {
      runStep(next, scenario.steps[next], now);
      next++;
    }
    if (next >= scenario.steps.length) {
      unsubscribe();
      finish(records);
    }
  };
  const unsubscribe = sim.runtime.onTick(poll);
  poll(start);
  return {
    records,
    done,
    stop: () => {
      unsubscribe();
      finish(records);
    },
  };
}
