// `plantgate sim` as a plant engineer runs it: a scenario timeline at speed, step mode driven over
// the HTTP API, faults from the command line.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ROOT, run, start } from './cli.js';

const PLANT = path.join(ROOT, 'fixtures/plants/heat-loop.yaml');
const SCENARIO = path.join(ROOT, 'fixtures/plants/scenarios/heat-loop-valve-sticks.yaml');

function logLines(stdout: string): Record<string, any>[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, any>);
}

describe('plantgate sim (process)', () => {
  beforeAll(() => assertBuilt());

  it('runs a scenario at 1000x speed, logs every step, and exits 0 after the last one', async () => {
    const r = await run(['sim', '--plant', PLANT, '--port', '0', '--scenario', SCENARIO, '--speed', '1000', '--exit-after-scenario'], { timeoutMs: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const steps = logLines(r.stdout).filter((l) => l.scenario === 'steam valve sticks during heat-up' && l.step !== undefined);
    expect(steps.map((l) => [l.step, l.at, l.msg])).toEqual([
      [0, '0s', 'loop to auto, pump on'],
      [1, '20s', 'the steam valve sticks where it is'],
      [2, '60s', 'the temperature transmitter starts drifting up'],
      [3, '90s', 'the PLC gets busy on the setpoint register'],
      [4, '120s', 'maintenance frees the valve and recalibrates the transmitter'],
    ]);
    expect(steps[4].actions).toEqual(['cleared 3 faults']);
  });

  it('moves plant time only when told to in step mode, over the HTTP API', async () => {
    const p = await start(['sim', '--plant', PLANT, '--port', '0', '--api-port', '0', '--step', '--fault', '{"kind":"exception","code":6,"points":["temp.setpoint"]}'], 'simulator serving');
    try {
      const api = logLines(p.output()).find((l) => l.msg === 'simulator serving Modbus/TCP')!.api as string;
      const put = await fetch(`${api}/api/points/valve.command`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"value":100}' });
      expect(put.status).toBe(200);
      const json = async (url: string): Promise<any> => (await fetch(url)).json();
      const before = (await json(`${api}/api/points/valve.position`)).value;
      expect(before).toBe(0);
      await fetch(`${api}/api/clock/step`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ms":5000}' });
      expect((await json(`${api}/api/points/valve.position`)).value).toBe(50);
      expect((await json(`${api}/api/faults`)).faults).toMatchObject([{ id: 'f1', spec: { kind: 'exception', code: 6 } }]);
    } finally {
      p.child.kill('SIGTERM');
    }
    expect((await p.exited).code).toBe(0);
  });

  it('exits 2 naming the field of a bad --fault, and for --step without --api-port', async () => {
    const bad = await run(['sim', '--plant', PLANT, '--port', '0', '--fault', '{"kind":"latency","distribution":"uniform","min_ms":1}']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--fault #1: max_ms: is required for a uniform latency');
    const step = await run(['sim', '--plant', PLANT, '--port', '0', '--step']);
    expect(step.code).toBe(2);
    expect(step.stderr).toContain('--step needs --api-port');
  });

  it('exits 2 with file:line:column: field for a scenario naming a point the plant lacks', async () => {
    const r = await run(['sim', '--plant', path.join(ROOT, 'fixtures/plants/water-treatment.yaml'), '--port', '0', '--scenario', SCENARIO]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${SCENARIO}:8:23: steps[0].set.loop.auto: is not a point of plant water-treatment`);
  });

  it('exits 2 for a connection limit or idle timeout that is not a positive integer', async () => {
    const max = await run(['sim', '--plant', PLANT, '--port', '0', '--max-connections', '0']);
    expect([max.code, max.stderr]).toEqual([2, 'plantgate sim: --max-connections must be an integer of at least 1, not "0"\n']);
    const idle = await run(['sim', '--plant', PLANT, '--port', '0', '--idle-timeout', '5s']);
    expect([idle.code, idle.stderr]).toEqual([2, 'plantgate sim: --idle-timeout must be milliseconds 1..2147483647, not "5s"\n']);
  });

  it('is imported by a harness as plantgate/sim (package exports), clock included', async () => {
    // Node resolves the package's own name from inside it, through package.json "exports", as it
    // does for a harness that installed plantgate.
    const script = `
      const { startSimulator, ManualClock } = await import('plantgate/sim');
      const clock = new ManualClock(0);
      const sim = await startSimulator({ plant: 'fixtures/plants/reference-plc.yaml', clock });
      sim.step(1500);
      console.log(JSON.stringify({ now: clock.now(), endpoints: sim.endpoints.map((e) => e.plc) }));
      await sim.close();`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, timeout: 20_000 });
    expect(JSON.parse(stdout)).toEqual({ now: 1500, endpoints: ['ref'] });
  });
});
