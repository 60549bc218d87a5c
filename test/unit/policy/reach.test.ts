// What a subject could be allowed (src/policy/reach.ts) must agree with the decision engine: the
// MCP front lists tools from it, so a point it leaves out must be one the engine never allows,
// and a point it lists must be one the engine allows with a value inside the bounds it reports.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Command, Subject } from '../../../src/core/command.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import type { BundlePayload, BundleRule } from '../../../src/policy/payload.js';
import { reachOf } from '../../../src/policy/reach.js';
import { commandFromRequest } from '../../../protocols/modbus/command.js';
import { readRequest, writeFunctionCode, writeRequest } from '../../../protocols/mcp/modbus-points.js';
import { demoPayload, NOW_MS, subject } from './fixtures.js';
import { resolveModbus } from '../../resolve.js';

const rule = (r: Partial<BundleRule> & Pick<BundleRule, 'id'>): BundleRule => ({
  description: '', subject: { workload: 'spiffe://plant.example/agent/*', roles: [] }, assets: ['plc1'], operations: ['write'], points: [], ranges: [], bounds: {}, ...r,
});

/** The fixture plant with rules that exercise every part of subject and target matching. */
function payload(): BundlePayload {
  const p = demoPayload();
  p.rules.push(
    rule({ id: 'assistant-for-alice', subject: { workload: 'spiffe://plant.example/agent/assistant', roles: [], act: '*@plant.example' }, points: ['pump1.speed'], bounds: { 'pump1.speed': { min: 0, max: 1800 } } }),
    rule({ id: 'alice-speed', subject: { workload: 'user:alice@plant.example', roles: [] }, points: ['pump1.speed'], bounds: { 'pump1.speed': { min: 600, max: 1500 } } }),
    rule({ id: 'maintainer-auto', subject: { workload: 'spiffe://plant.example/maintenance/*', roles: ['maintainer'], assurance: 'mtls+token' }, points: ['control.auto'] }),
    rule({ id: 'zoned', subject: { workload: 'spiffe://plant.example/agent/zoned', roles: [], scopes: ['plant'] }, points: ['tank1.setpoint'], cross_zone: ['operations'], require_scope: 'tune' }),
    rule({ id: 'ranged', subject: { workload: 'spiffe://plant.example/agent/ranged', roles: [] }, ranges: [{ table: 'holding', from: 1, to: 3 }], function_codes: [16] }),
  );
  return p;
}

const P = payload();
const engine = PolicyEngine.fromPayload(P);
const asset = P.assets[0]!;
const fc5 = (point: string) => writeFunctionCode(asset.points[point]!);
const options = { functionCode: (_a: unknown, def: Parameters<typeof readRequest>[0] | undefined, op: string) => (def === undefined ? -1 : op === 'read' ? readRequest(def).fc : writeFunctionCode(def)) };

function write(point: string, value: number): Command | undefined {
  const req = writeRequest(asset.points[point]!, value);
  if ('refused' in req) return undefined;
  const cmd = commandFromRequest('s', asset.unit_id, req);
  resolveModbus(engine, cmd, asset.unit_id);
  return cmd;
}

const subjects = fc.record({
  workload: fc.constantFrom('optimizer', 'assistant', 'reporter', 'zoned', 'ranged', 'maintenance/laptop1'),
  roles: fc.subarray(['maintainer', 'operator']),
  scopes: fc.subarray(['read', 'write', 'plant', 'tune', '*']),
  act: fc.option(fc.constantFrom('alice@plant.example', 'mallory@elsewhere.example'), { nil: undefined }),
  assurance: fc.constantFrom('none', 'static-ip+token', 'mtls+token') as fc.Arbitrary<Subject['assurance']>,
  zone: fc.option(fc.constantFrom('treatment', 'operations', 'office'), { nil: undefined }),
}).map((r): Subject => {
  const s = subject({
    workloadId: r.workload.includes('/') ? `spiffe://plant.example/${r.workload}` : `spiffe://plant.example/agent/${r.workload}`,
    roles: r.roles,
    scopes: r.scopes,
    assurance: r.assurance,
    jti: `j-${Math.random()}`,
  });
  if (r.act !== undefined) s.actSub = [r.act];
  if (r.zone !== undefined) s.zone = r.zone;
  return s;
});

describe('what a subject could be allowed', () => {
  it('lists a point as writable exactly when the engine allows writing it, inside the bounds it reports', () => {
    fc.assert(
      fc.property(subjects, (s) => {
        const reach = reachOf(P, s, options).find((r) => r.asset.id === 'plc1');
        for (const point of Object.keys(asset.points)) {
          const grant = reach?.write.get(point);
          const def = asset.points[point]!;
          if (def.table !== 'coil' && def.table !== 'holding') continue;
          if (grant === undefined) {
            // Not listed: no value the point can take is allowed.
            for (const v of def.type === 'bool' ? [0, 1] : [0, 1, 60, 700, 1000]) {
              const cmd = write(point, v);
              if (cmd !== undefined) expect(engine.decide(cmd, s, NOW_MS).effect, `${s.workloadId} ${point} := ${v}`).toBe('deny');
            }
          } else {
            // Listed: a value inside the reported bounds passes (the rules here have no windows or approvals).
            const lo = Number.isFinite(grant.min) ? grant.min : 0;
            const hi = Number.isFinite(grant.max) ? grant.max : def.type === 'bool' ? 1 : lo + 10;
            const cmd = write(point, def.type === 'bool' ? 1 : Math.round((lo + hi) / 2));
            expect(cmd).toBeDefined();
            expect(engine.decide(cmd!, s, NOW_MS), `${s.workloadId} ${point}`).toMatchObject({ effect: 'allow' });
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('narrows a delegated agent to what the human it acts for may do (alice: 600 to 1500 rpm)', () => {
    const s = subject({ workloadId: 'spiffe://plant.example/agent/assistant', actSub: ['alice@plant.example'] });
    const g = reachOf(P, s, options)[0]!.write.get('pump1.speed')!;
    expect([g.min, g.max]).toEqual([600, 1500]);
    expect(g.ruleIds).toEqual(['assistant-for-alice', 'alice-speed']);
    // Someone outside the act glob gets nothing from that rule.
    expect(reachOf(P, { ...s, actSub: ['mallory@elsewhere.example'] }, options)[0]?.write.has('pump1.speed') ?? false).toBe(false);
  });

  it('leaves out a point whose only rule allows other function codes than the front sends', () => {
    const optimizer = subject();
    // optimizer-pump allows FC 5/15 for the coils: the front writes coils with FC 5.
    expect(fc5('pump1.run')).toBe(5);
    expect(reachOf(P, optimizer, options)[0]!.write.has('pump1.run')).toBe(true);
    // 'ranged' covers holding 1..3 by address, for FC 16 only: the 32-bit flow.target (FC 16) but not pump1.speed (FC 6).
    const ranged = reachOf(P, subject({ workloadId: 'spiffe://plant.example/agent/ranged' }), options)[0]!;
    expect([...ranged.write.keys()]).toEqual(['flow.target']);
  });

  it('reports approvals and windows of the rules that would allow a write', () => {
    const p = payload();
    p.rules.push(rule({ id: 'planner-drain', subject: { workload: 'spiffe://plant.example/agent/planner', roles: [] }, points: ['valve1.open'], approval: 'required', windows: ['nightly'] }));
    p.windows = [{ id: 'nightly', time_zone: 'UTC', days: ['mon'], from: '22:00', to: '06:00' }];
    const g = reachOf(p, subject({ workloadId: 'spiffe://plant.example/agent/planner' }), options)[0]!.write.get('valve1.open')!;
    expect(g).toMatchObject({ approval: true, windows: ['nightly'], ruleIds: ['planner-drain'] });
  });
});
