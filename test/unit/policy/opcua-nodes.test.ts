// OPC UA nodes in the policy language (issue 21): an asset whose server describes itself (no point
// map), rules selecting nodes by NodeId or browse path with globs, per attribute, typed bounds on
// written values and method arguments — compiled from YAML and decided by the real engine.
import fc from 'fast-check';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Command, Subject, TypedValue } from '../../../src/core/command.js';
import { SourceErrors } from '../../../src/core/errors.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { PolicyMemory } from '../../../src/policy/memory.js';
import { pathGlob } from '../../../src/core/glob.js';
import { compileSources } from '../../../src/policy/sources.js';
import { resolveOpcua } from '../../resolve.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const NS = 'urn:acme:plc:line1';
const NOW = Date.UTC(2026, 0, 15, 12);
const AGENT = 'spiffe://plant.example/agent/optimizer';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-ua-nodes-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const HEAD = `bundle: { name: t, audience: gw, valid_for: 1d }
limits: { max_token_ttl: 15m }
issuers: [{ iss: https://issuer, jwks_file: ${JSON.stringify(path.join(ROOT, 'fixtures/keys/dev-issuer.jwks.json'))} }]
assets:
  - { id: line1, zone: z, criticality: high, protocol: opcua, namespace: "${NS}" }
  - { id: plc1, zone: z, criticality: high, protocol: modbus, unit_id: 1, points_from: ${JSON.stringify(path.join(ROOT, 'fixtures/plants/water-treatment.yaml'))} }
`;

async function compile(rules: string) {
  const file = path.join(dir, `b-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, HEAD + rules);
  return compileSources(file, { now: NOW, revision: 1 });
}

async function problems(rules: string): Promise<string[]> {
  try {
    await compile(rules);
  } catch (err) {
    if (err instanceof SourceErrors) return err.errors.map((e) => e.toString());
    throw err;
  }
  return [];
}

const subject = (scopes: string[]): Subject => ({
  workloadId: AGENT, owner: 'o', taskId: 't', taskPurpose: 'p', jti: 'j', roles: [], scopes, assurance: 'mtls+token', issuer: 'https://issuer', expiresAtMs: NOW + 60_000, issuedAtMs: NOW,
});

/** The Command the front builds for one mirrored node. */
function cmd(operation: Command['operation'], id: string, browsePath: string, value?: TypedValue, attribute?: string): Command {
  const c: Command = { sessionId: 's', protocol: 'opcua', assetId: 'line1', operation, functionCode: 0, targets: [{ nodeId: `nsu=${NS};${id}`, browsePath, ...(attribute ? { attribute } : {}) }], points: [browsePath] };
  if (value !== undefined) {
    c.typedValues = operation === 'call' ? (value as unknown as Record<string, TypedValue>) : { [browsePath]: value };
  }
  return c;
}

async function engineFor(rules: string): Promise<PolicyEngine> {
  return PolicyEngine.fromPayload(await compile(rules));
}

describe('OPC UA assets whose server describes itself', () => {
  it('compiles an asset with a namespace and no point map, plant file or unit id', async () => {
    const p = await compile(`rules:
  - { id: r, subject: { workload: ${AGENT} }, asset: line1, operations: [read], nodes: [{ path: /Line1/** }] }
`);
    expect(p.assets[0]).toEqual({ id: 'line1', zone: 'z', criticality: 'high', protocol: 'opcua', unit_id: 0, namespace: NS, points: {} });
    expect(p.rules[0]!.nodes).toEqual([{ path: '/Line1/**' }]);
  });

  it('reports each mistake in nodes: with file, line and field', async () => {
    const errs = await problems(`rules:
  - id: r
    subject: { workload: ${AGENT} }
    asset: line1
    operations: [read]
    nodes:
      - { node: "ns=2;s=Line1.Speed" }
      - { path: Line1/Speed }
      - { attributes: [Value] }
      - { path: /Line1/X, attributes: [Valeu] }
      - { path: /Line1/Y, bounds: { max: 1 } }
      - { path: /Line1/Z, arguments: { speed: { max_step: 3 } } }
  - { id: m, subject: { workload: ${AGENT} }, assets: [line1, plc1], operations: [read], nodes: [{ path: /Line1 }] }
  - { id: w, subject: { workload: ${AGENT} }, asset: line1, operations: [write], nodes: [{ path: /A, bounds: { pattern: "(" } }, { path: /B, bounds: { min: 5, max: 1 } }, { path: /C, bounds: {} }] }
`);
    const text = errs.join('\n');
    expect(text).toMatch(/:13:\d+: rules\[0\]\.nodes\[0\]\.node: 'ns=2;s=Line1.Speed' uses a namespace index/);
    expect(text).toMatch(/rules\[0\]\.nodes\[1\]\.path: 'Line1\/Speed' is not a browse path from the Objects folder/);
    expect(text).toMatch(/rules\[0\]\.nodes\[2\]: give node \(a NodeId glob\), path/);
    expect(text).toMatch(/rules\[0\]\.nodes\[3\]\.attributes\[0\]: unknown attribute 'Valeu'/);
    expect(text).toMatch(/rules\[0\]\.nodes\[4\]\.bounds: bounds apply to written values, but the rule does not allow write/);
    expect(text).toMatch(/rules\[0\]\.nodes\[5\]\.arguments: arguments bound method calls/);
    expect(text).toMatch(/rules\[0\]\.nodes\[5\]\.arguments\.speed\.max_step: max_step applies to node values, not method arguments/);
    expect(text).toMatch(/rules\[1\]\.nodes: nodes select OPC UA nodes, but asset 'plc1' is not an OPC UA asset/);
    expect(text).toMatch(/rules\[2\]\.nodes\[0\]\.bounds\.pattern: not a regular expression/);
    expect(text).toMatch(/rules\[2\]\.nodes\[1\]\.bounds\.max: 1 is below min \(5\)/);
    expect(text).toMatch(/rules\[2\]\.nodes\[2\]\.bounds: give at least one bound/);
  });

  it('refuses node_ids on an asset without a plant file', async () => {
    const file = path.join(dir, 'nodeids.yaml');
    await writeFile(file, HEAD.replace(`namespace: "${NS}" }`, `namespace: "${NS}", node_ids: { speed: s=Line1.Speed } }`) + 'rules: []\n');
    await expect(compileSources(file, { now: NOW, revision: 1 })).rejects.toThrow(/assets\[0\]\.node_ids: node_ids name points of a plant file/);
  });
});

describe('deciding on mirrored nodes', () => {
  const RULES = `rules:
  - { id: look, subject: { workload: "spiffe://plant.example/agent/*" }, asset: line1, operations: [read, browse], nodes: [{ path: /Line1/** }] }
  - { id: meta, subject: { workload: ${AGENT} }, asset: line1, operations: [read], nodes: [{ node: "s=Line1.*", attributes: [Description, DisplayName] }] }
  - id: tune
    subject: { workload: ${AGENT} }
    asset: line1
    operations: [write]
    nodes:
      - { path: /Line1/Speed, bounds: { min: 0, max: 1500, max_step: 300 } }
      - { path: "/Line1/*Count", bounds: { enum: [1, 2, 3] } }
      - { path: /Line1/Recipe, bounds: { pattern: "[A-Z]-[0-9]{3}", max_length: 5 } }
      - { path: /Line1/Running, bounds: { enum: [true] } }
      - { path: /Line1/Tag, bounds: { max_length: 4 } }
      - { path: /Line1/Setpoints, bounds: { min: 0, max: 10, min_items: 1, max_items: 3 } }
      - { path: /Line1/Stamp }
      - { node: "nsu=${NS};s=Line1.Label", attributes: [DisplayName] }
  - id: run
    subject: { workload: ${AGENT} }
    asset: line1
    operations: [call]
    nodes: [{ path: /Line1/Start, arguments: { speed: { min: 0, max: 900 }, recipe: { enum: [A-100] } } }]
`;

  it('covers by browse path glob and by NodeId glob, per attribute', async () => {
    const e = await engineFor(RULES);
    const s = subject(['read', 'browse']);
    expect(e.decide(cmd('read', 's=Line1.Speed', '/Line1/Speed'), s, NOW)).toMatchObject({ effect: 'allow', ruleId: 'look' });
    expect(e.decide(cmd('browse', 's=Line1', '/Line1'), s, NOW)).toMatchObject({ effect: 'allow', ruleId: 'look' });
    expect(e.decide(cmd('read', 's=Line10.Speed', '/Line10/Speed'), s, NOW)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
    expect(e.decide(cmd('read', 's=Line1.Speed', '/Line1/Speed', undefined, 'Description'), s, NOW)).toMatchObject({ effect: 'allow', ruleId: 'meta' });
    expect(e.decide(cmd('read', 's=Line1.Speed', '/Line1/Speed', undefined, 'AccessLevel'), s, NOW)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
    // A path selector never matches a target whose path is unknown.
    const noPath = cmd('read', 's=Line1.Speed', '/x');
    delete noPath.targets[0]!.browsePath;
    expect(e.decide(noPath, s, NOW)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
  });

  it('names a mirrored node by its browse path in cmd.points', async () => {
    const e = await engineFor(RULES);
    const c = cmd('read', 's=Line1.Speed', '/Line1/Speed');
    c.points = [];
    resolveOpcua(e, c);
    expect(c.points).toEqual(['/Line1/Speed']);
  });

  it('checks typed bounds: numbers, enums, patterns, lengths, booleans, arrays; a bound that cannot apply to the type fails', async () => {
    const e = await engineFor(RULES);
    const s = subject(['write']);
    // An allowed write is forwarded and acknowledged: its value is the node's PLC value from then on.
    const memory = new PolicyMemory();
    const w = (id: string, p: string, v: TypedValue) => {
      const d = e.decide(cmd('write', id, p, v), s, NOW, memory);
      if (d.effect === 'allow' && d.forward !== undefined) {
        memory.forwarded(d.forward, NOW);
        memory.settled(d.forward, 'acknowledged', NOW);
      }
      return d;
    };
    memory.observe('line1', `nsu=${NS};s=Line1.Speed`, 1000, NOW);
    expect(w('s=Line1.Speed', '/Line1/Speed', 1200)).toMatchObject({ effect: 'allow' });
    expect(w('s=Line1.Speed', '/Line1/Speed', 1600)).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    expect(w('s=Line1.Speed', '/Line1/Speed', Number.NaN)).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    expect(w('s=Line1.Speed', '/Line1/Speed', '1200')).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    // The acknowledged 1200 is the node's value now: 800 is a step of 400.
    expect(w('s=Line1.Speed', '/Line1/Speed', 800)).toMatchObject({ effect: 'deny', reason: 'STEP_TOO_LARGE' });
    expect(w('s=Line1.Speed', '/Line1/Speed', 1000)).toMatchObject({ effect: 'allow' });
    expect(memory.point('line1', `nsu=${NS};s=Line1.Speed`)?.value).toBe(1000);
    expect(w('s=Line1.BatchCount', '/Line1/BatchCount', 2)).toMatchObject({ effect: 'allow' });
    expect(w('s=Line1.BatchCount', '/Line1/BatchCount', 2n)).toMatchObject({ effect: 'allow' });
    expect(w('s=Line1.BatchCount', '/Line1/BatchCount', 4)).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    expect(w('s=Line1.Recipe', '/Line1/Recipe', 'B-200')).toMatchObject({ effect: 'allow' });
    expect(w('s=Line1.Recipe', '/Line1/Recipe', 'b-200')).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    expect(w('s=Line1.Recipe', '/Line1/Recipe', 'xB-200')).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    expect(w('s=Line1.Running', '/Line1/Running', true)).toMatchObject({ effect: 'allow' });
    expect(w('s=Line1.Running', '/Line1/Running', false)).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    expect(w('s=Line1.Tag', '/Line1/Tag', 'ab€d')).toMatchObject({ effect: 'allow' });
    expect(w('s=Line1.Tag', '/Line1/Tag', Uint8Array.of(1, 2, 3, 4, 5))).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    expect(w('s=Line1.Setpoints', '/Line1/Setpoints', [1, 9.5])).toMatchObject({ effect: 'allow' });
    expect(w('s=Line1.Setpoints', '/Line1/Setpoints', [])).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    expect(w('s=Line1.Setpoints', '/Line1/Setpoints', [1, 2, 3, 4])).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    expect(w('s=Line1.Setpoints', '/Line1/Setpoints', 5)).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    expect(w('s=Line1.Stamp', '/Line1/Stamp', new Date(NOW))).toMatchObject({ effect: 'allow' });
    // Only the DisplayName attribute of Label is writable by the rule.
    expect(e.decide(cmd('write', 's=Line1.Label', '/Line1/Label', 'x', 'DisplayName'), s, NOW)).toMatchObject({ effect: 'allow' });
    expect(e.decide(cmd('write', 's=Line1.Label', '/Line1/Label', 'x'), s, NOW)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
  });

  it('bounds method arguments by name; a bounded argument that is missing is out of bounds', async () => {
    const e = await engineFor(RULES);
    const s = subject(['call']);
    const call = (args: Record<string, TypedValue>) => e.decide(cmd('call', 's=Line1.Start', '/Line1/Start', args as unknown as TypedValue), s, NOW);
    expect(call({ speed: 500, recipe: 'A-100' })).toMatchObject({ effect: 'allow', ruleId: 'run' });
    expect(call({ speed: 950, recipe: 'A-100' })).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'run' });
    expect(call({ speed: 500, recipe: 'B-100' })).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
    expect(call({ speed: 500 })).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS' });
  });
});

describe('browse path globs', () => {
  const segment = fc.stringMatching(/^[A-Za-z0-9 ._-]{1,8}$/);
  const paths = fc.array(segment, { minLength: 1, maxLength: 5 }).map((s) => `/${s.join('/')}`);

  it("'/a/**' matches /a and every path below it, and nothing else", () => {
    fc.assert(
      fc.property(paths, paths, (root, other) => {
        const re = pathGlob(`${root}/**`);
        expect(re.test(root)).toBe(true);
        expect(re.test(`${root}/x`)).toBe(true);
        expect(re.test(other)).toBe(other === root || other.startsWith(`${root}/`));
      }),
    );
  });

  it("'*' stays inside one segment; regex characters in browse names are literal", () => {
    fc.assert(
      fc.property(paths, segment, (root, name) => {
        const re = pathGlob(`${root}/*`);
        expect(re.test(`${root}/${name}`)).toBe(true);
        expect(re.test(`${root}/${name}/${name}`)).toBe(false);
      }),
    );
    expect(pathGlob('/Line1/Speed (m/s)').test('/Line1/Speed (m/s)')).toBe(true);
    expect(pathGlob('/Line.1/*').test('/Linex1/a')).toBe(false);
  });
});
