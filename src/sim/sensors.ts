// The measurement layer between the process and what a client reads: measurement noise, a stuck
// sensor, a drifting sensor. The tables hold the *measured* value between ticks; before each
// process tick the true value is put back so the process (and its PID loops) integrate truth,
// not the fault. Never touches sockets; seeded, so the same seed and steps give the same values.
import type { PointDef } from '../assets/plant.js';
import { engineeringToRawClamped, rawToEngineering } from '../assets/points.js';
import type { Rng } from './random.js';
import type { PlcTables } from './tables.js';

export interface SensorEffects {
  /** Standard deviation of gaussian noise, engineering units (from the plant's noise blocks). */
  noise?: number;
  /** A stuck sensor reads this engineering value whatever the process does. */
  stuck?: number;
  /** A drifting sensor reads truth + ratePerS × seconds since sinceMs. */
  drift?: { ratePerS: number; sinceMs: number };
}

interface Entry {
  t: PlcTables;
  p: PointDef;
  truthRaw: number;
  appliedRaw: number;
  effects: SensorEffects;
}

export class SensorOverlay {
  private readonly entries = new Map<PointDef, Entry>();

  constructor(private readonly rng: Rng) {}

  get size(): number {
    return this.entries.size;
  }

  /** Adds or changes effects on a point and shows them at once (a harness need not step). */
  set(t: PlcTables, p: PointDef, effects: SensorEffects, nowMs: number, draw = false): void {
    let e = this.entries.get(p);
    if (e === undefined) {
      const raw = t.readRaw(p);
      e = { t, p, truthRaw: raw, appliedRaw: raw, effects: {} };
      this.entries.set(p, e);
    } else {
      this.adoptExternalWrite(e);
    }
    Object.assign(e.effects, effects);
    this.show(e, nowMs, draw);
  }

  /** Removes one effect; with none left the point reads truth again, at once. */
  clear(p: PointDef, effect: keyof SensorEffects, nowMs: number): void {
    const e = this.entries.get(p);
    if (e === undefined) return;
    this.adoptExternalWrite(e);
    delete e.effects[effect];
    if (e.effects.noise === undefined && e.effects.stuck === undefined && e.effects.drift === undefined) {
      e.t.writeRaw(p, e.truthRaw);
      this.entries.delete(p);
      return;
    }
    this.show(e, nowMs, false);
  }

  /** The process's value of a point under a faulty sensor (engineering units), or undefined. */
  truth(p: PointDef): number | undefined {
    const e = this.entries.get(p);
    if (e === undefined) return undefined;
    this.adoptExternalWrite(e);
    return rawToEngineering(p, e.truthRaw);
  }

  /** A harness or client set the point: that is the new truth. */
  setTruth(p: PointDef, raw: number, nowMs: number): boolean {
    const e = this.entries.get(p);
    if (e === undefined) return false;
    e.truthRaw = raw;
    this.show(e, nowMs, false);
    return true;
  }

  /** Before a process tick: put the true values back. */
  restore(): void {
    for (const e of this.entries.values()) {
      this.adoptExternalWrite(e);
      e.t.writeRaw(e.p, e.truthRaw);
    }
  }

  /** After a process tick: remember the truth, show the measurement. */
  apply(nowMs: number): void {
    for (const e of this.entries.values()) {
      e.truthRaw = e.t.readRaw(e.p);
      this.show(e, nowMs, true);
    }
  }

  /**
   * The process's side for a snapshot: the true value behind every overlaid point, and the noise
   * of the plant's noise blocks with its sequence. Stuck and drift are faults, not process state:
   * a snapshot leaves them out, and a restored point reads its truth.
   */
  save(): unknown {
    const entries = [...this.entries.values()].map((e) => {
      this.adoptExternalWrite(e);
      return { t: e.t, p: e.p, truthRaw: e.truthRaw, appliedRaw: e.appliedRaw, noise: e.effects.noise };
    });
    return { rng: this.rng.save(), entries };
  }

  /** Puts a saved state back (after the tables were restored): truths written, noise kept. */
  load(s: unknown): void {
    const st = s as { rng: [number, number | undefined]; entries: { t: PlcTables; p: PointDef; truthRaw: number; appliedRaw: number; noise: number | undefined }[] };
    this.rng.load(st.rng);
    this.entries.clear();
    for (const e of st.entries) {
      if (e.noise === undefined) {
        e.t.writeRaw(e.p, e.truthRaw);
        continue;
      }
      this.entries.set(e.p, { t: e.t, p: e.p, truthRaw: e.truthRaw, appliedRaw: e.appliedRaw, effects: { noise: e.noise } });
    }
  }

  private adoptExternalWrite(e: Entry): void {
    // A client wrote the register since we last showed a value: it set the truth (as on a PLC
    // where a write to an analog output replaces it), so keep it.
    const cur = e.t.readRaw(e.p);
    if (cur !== e.appliedRaw) e.truthRaw = cur;
  }

  private show(e: Entry, nowMs: number, draw: boolean): void {
    const fx = e.effects;
    let v: number;
    if (fx.stuck !== undefined) {
      v = fx.stuck;
    } else {
      v = rawToEngineering(e.p, e.truthRaw);
      if (fx.drift !== undefined) v += (fx.drift.ratePerS * (nowMs - fx.drift.sinceMs)) / 1000;
      // Noise is drawn once per process tick only, so the sequence depends on ticks, not on
      // how often a harness touches faults.
      if (fx.noise !== undefined && draw) v += this.rng.gaussian() * fx.noise;
    }
    if (fx.stuck !== undefined || fx.drift !== undefined || draw) {
      e.t.writeRaw(e.p, engineeringToRawClamped(e.p, v));
    }
    e.appliedRaw = e.t.readRaw(e.p);
  }
}
