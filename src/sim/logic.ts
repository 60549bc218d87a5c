// Runs a PLC's logic rungs (src/assets/logic-def.ts) once per tick, after the process: each rung's
// condition is read from the tables, and while it holds each point is set to its expression's
// value, the way a PLC's scan sets outputs from inputs. Deterministic and stateless; a value that
// cannot be computed (division by zero, an unknown) leaves the point as it is.
import type { LogicDef } from '../assets/logic-def.js';
import { compileExpr, type Evaluator } from '../assets/expr.js';
import { engineeringToRawClamped } from '../assets/points.js';
import type { PointDef } from '../assets/plant.js';
import type { ProcessBlock } from './process.js';
import type { PlcTables } from './tables.js';

interface CompiledRung {
  reads: PointDef[];
  when: Evaluator | undefined;
  sets: { point: PointDef; value: Evaluator }[];
}

export class LogicBlock implements Pick<ProcessBlock, 'step' | 'save' | 'load'> {
  private readonly rungs: CompiledRung[];
  private values = new Float64Array(8);

  constructor(
    rungs: readonly LogicDef[],
    private readonly t: PlcTables,
  ) {
    this.rungs = rungs.map((r) => {
      const slot = (name: string): number => r.reads.findIndex((p) => p.name === name);
      const resolve = (ref: { name: string }) => slot(ref.name);
      return {
        reads: r.reads,
        when: r.when === undefined ? undefined : compileExpr(r.when, resolve),
        sets: r.sets.map((s) => ({ point: s.point, value: compileExpr(s.value, resolve) })),
      };
    });
  }

  step(): void {
    for (const r of this.rungs) {
      if (r.reads.length > this.values.length) this.values = new Float64Array(r.reads.length);
      for (let i = 0; i < r.reads.length; i++) this.values[i] = this.t.read(r.reads[i]);
      // A condition that cannot be decided (NaN) does not fire: the outputs stay as they are.
      if (r.when !== undefined && r.when(this.values) !== 1) continue;
      for (const s of r.sets) {
        const v = s.value(this.values);
        if (Number.isNaN(v)) continue;
        this.t.writeRaw(s.point, engineeringToRawClamped(s.point, v));
      }
    }
  }

  save(): unknown {
    return null; // logic keeps no state of its own: it is recomputed from the points every scan
  }

  load(): void {}
}
