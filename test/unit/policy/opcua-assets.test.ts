// OPC UA assets in the policy language: NodeIds canonical (`nsu=<namespace>;<id>`) whatever the
// author wrote, the plant file's OPC UA face as the default map, browse of the asset's object,
// method calls with bounded arguments — compiled from YAML and decided by the real engine.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Command, Subject } from '../../../src/core/command.js';
import { SourceErrors } from '../../../src/core/errors.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { compileSources } from '../../../src/policy/sources.js';
import { expandNodeId, nodeIdProblem } from '../../../src/assets/node-id.js';
import { resolveOpcua } from '../../resolve.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const NS = 'urn:plantgate:sim:water-treatment:plc1';
const NOW = Date.UTC(2026, 0, 15, 12);
const AGENT = 'spiffe://plant.example/agent/optimizer';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-ua-policy-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const head = () => `bundle: { name: t, audience: gw, valid_for: 1d }
limits: { max_token_ttl: 15m }
issuers: [{ iss: https://issuer, jwks_file: ${JSON.stringify(path.join(ROOT, 'fixtures/keys/dev-issuer.jwks.json'))} }]
`;
const PLANT = JSON.stringify(path.join(ROOT, 'fixtures/plants/water-treatment.yaml'));

async function compile(yaml: string) {
  const file = path.join(dir, `b-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, head() + yaml);
  return { file, payload: () => compileSources(file, { now: NOW, revision: 1 }) };
}

async function problems(yaml: string): Promise<string[]> {
  const { payload } = await compile(yaml);
  try {
    await payload();
  } catch (err) {
    if (err instanceof SourceErrors) return err.errors.map((e) => e.toString());
    throw err;
  }
  return [];
}

const subject = (scopes: string[]): Subject => ({
  workloadId: AGENT, owner: 'o', taskId: 't', taskPurpose: 'p', jti: 'j', roles: [], scopes, assurance: 'mtls+token', issuer: 'https://issuer', expiresAtMs: NOW + 60_000, issuedAtMs: NOW,
});
const ua = (operation: Command['operation'], nodeId: string, values?: Record<string, number>): Command => {
  const c: Command = { sessionId: 's', protocol: 'opcua', assetId: '', operation, functionCode: 0, targets: [{ nodeId }], points: [] };
  if (values) c.values = values;
  return c;
};

const DERIVED = `assets:
  - { id: plc1-ua, zone: z, criticality: high, protocol: opcua, plc: plc1, points_from: ${PLANT},
      methods: { pump1.start: { node_id: s=pump1.start, inputs: [{ name: speed, type: Double, min: 0, max: 1800 }] }, pump1.stop: { node_id: "nsu=${NS};s=pump1.stop" } } }
rules:
  - { id: look, subject: { workload: "spiffe://plant.example/agent/*" }, asset: plc1-ua, operations: [read, browse], points: ["*"] }
  - { id: run, subject: { workload: ${AGENT} }, asset: plc1-ua, operations: [call], points: [pump1.start] }
`;

describe('NodeIds in the policy', () => {
  it('expands a bare identifier into the asset namespace and refuses namespace indexes', () => {
    expect(expandNodeId(NS, 's=tank1.level')).toBe(`nsu=${NS};s=tank1.level`);
    expect(expandNodeId(NS, `nsu=${NS};i=1001`)).toBe(`nsu=${NS};i=1001`);
    expect(nodeIdProblem(NS, 'ns=2;s=tank1.level')).toMatch(/namespace index.*nsu=urn:plantgate:sim:water-treatment:plc1;s=tank1.level/);
    expect(nodeIdProblem(NS, 'nsu=urn:other;s=x')).toMatch(/names namespace 'urn:other'/);
    expect(nodeIdProblem(NS, 'tank1.level')).toMatch(/not an OPC UA identifier/);
  });

  it('an OPC UA asset from a plant file needs no unit_id and gets the simulator face: namespace, NodeIds, object, methods', async () => {
    const p = await (await compile(DERIVED)).payload();
    const a = p.assets[0]!;
    expect(a.unit_id).toBe(0);
    expect(a.namespace).toBe(NS);
    expect(a.object_node).toBe(`nsu=${NS};s=plc1`);
    expect(a.points['tank1.level']!.node_id).toBe(`nsu=${NS};s=tank1.level`);
    expect(Object.values(a.points).every((pt) => pt.node_id?.startsWith(`nsu=${NS};s=`))).toBe(true);
    expect(a.methods).toEqual({
      'pump1.start': { node_id: `nsu=${NS};s=pump1.start`, inputs: [{ name: 'speed', type: 'Double', min: 0, max: 1800 }], outputs: [] },
      'pump1.stop': { node_id: `nsu=${NS};s=pump1.stop`, inputs: [], outputs: [] },
    });
  });

  it('bare node_ids are stored canonical, so the engine matches the front\'s targets', async () => {
    const p = await (
      await compile(`assets:
  - { id: ua1, zone: z, criticality: high, protocol: opcua, plc: plc1, namespace: urn:x, points_from: ${PLANT}, node_ids: { tank1.level: "s=Tank1.Level" } }
rules:
  - { id: r, subject: { workload: ${AGENT} }, asset: ua1, operations: [read], points: ["*"] }
`)
    ).payload();
    expect(p.assets[0]!.points['tank1.level']!.node_id).toBe('nsu=urn:x;s=Tank1.Level');
    expect(p.assets[0]!.points['tank1.setpoint']!.node_id).toBeUndefined();
    const e = PolicyEngine.fromPayload(p);
    const c = ua('read', 'nsu=urn:x;s=Tank1.Level');
    resolveOpcua(e, c);
    expect(c.points).toEqual(['tank1.level']);
    expect(e.decide(c, subject(['read']), NOW).effect).toBe('allow');
  });

  it('reports ns=N NodeIds, foreign namespaces, bad types and method/point clashes at file:line:col', async () => {
    const errs = await problems(`assets:
  - id: ua1
    zone: z
    criticality: high
    protocol: opcua
    plc: plc1
    points_from: ${PLANT}
    node_ids:
      tank1.level: ns=2;s=tank1.level
      tank1.setpoint: nsu=urn:other;s=x
    methods:
      tank1.level: { node_id: s=a }
      pump1.start: { node_id: s=b, inputs: [{ name: speed, type: Real }] }
rules: []
`);
    expect(errs.some((e) => /:12:20: assets\[0\]\.node_ids\.tank1\.level: NodeId 'ns=2;s=tank1.level' uses a namespace index/.test(e))).toBe(true);
    expect(errs.some((e) => /:13:23: assets\[0\]\.node_ids\.tank1\.setpoint: .*names namespace 'urn:other'/.test(e))).toBe(true);
    expect(errs.some((e) => /:15:7: assets\[0\]\.methods\.tank1\.level: 'tank1\.level' is already a point/.test(e))).toBe(true);
    expect(errs.some((e) => /:16:66: assets\[0\]\.methods\.pump1\.start\.inputs\[0\]\.type: unknown value 'Real'/.test(e))).toBe(true);
  });

  it('refuses OPC UA fields on a Modbus asset and an OPC UA asset without a namespace source', async () => {
    const errs = await problems(`assets:
  - { id: plc1, zone: z, criticality: high, protocol: modbus, unit_id: 1, points_from: ${PLANT}, object_node: s=plc1 }
  - { id: ua2, zone: z, criticality: high, protocol: opcua, plc: nope, points_from: ${PLANT} }
rules: []
`);
    expect(errs.some((e) => /assets\[0\]\.object_node: only OPC UA assets have object_node/.test(e))).toBe(true);
    expect(errs.some((e) => /assets\[1\]\.plc: plant 'water-treatment' has no PLC with id 'nope'/.test(e))).toBe(true);
  });
});

describe('OPC UA browse and call decisions', () => {
  it('a browse rule covers the asset object node; without one the browse is NO_MATCHING_RULE', async () => {
    const e = PolicyEngine.fromPayload(await (await compile(DERIVED)).payload());
    const c = ua('browse', `nsu=${NS};s=plc1`);
    resolveOpcua(e, c);
    expect(c.assetId).toBe('plc1-ua');
    expect(e.decide(c, subject(['browse']), NOW)).toMatchObject({ effect: 'allow', ruleId: 'look' });
    expect(e.decide(c, subject(['read']), NOW)).toMatchObject({ effect: 'deny', reason: 'SCOPE_MISSING' });
    const other = ua('browse', `nsu=${NS};s=plc2`);
    resolveOpcua(e, other);
    expect(e.decide(other, subject(['browse']), NOW).reason).toBe('NO_MATCHING_RULE');
    // The object node is not a point: a read of it is covered by no rule.
    const read = ua('read', `nsu=${NS};s=plc1`);
    resolveOpcua(e, read);
    expect(e.decide(read, subject(['read']), NOW).reason).toBe('NO_MATCHING_RULE');
  });

  it('a call is allowed by name with its arguments inside the asset bounds, and denied outside or when missing', async () => {
    const e = PolicyEngine.fromPayload(await (await compile(DERIVED)).payload());
    const call = (values?: Record<string, number>, method = 'pump1.start') => {
      const c = ua('call', `nsu=${NS};s=${method}`, values);
      resolveOpcua(e, c);
      return c;
    };
    expect(call({ speed: 1200 }).points).toEqual(['pump1.start']);
    expect(e.decide(call({ speed: 1200 }), subject(['call']), NOW)).toMatchObject({ effect: 'allow', ruleId: 'run' });
    expect(e.decide(call({ speed: 2500 }), subject(['call']), NOW)).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'run' });
    expect(e.decide(call(), subject(['call']), NOW).reason).toBe('VALUE_OUT_OF_BOUNDS');
    expect(e.decide(call({ speed: 1200 }), subject(['write']), NOW).reason).toBe('SCOPE_MISSING');
    expect(e.decide(call({}, 'pump1.stop'), subject(['call']), NOW).reason).toBe('NO_MATCHING_RULE');
  });

  it('the demo bundle compiles with its OPC UA asset and interlock', async () => {
    const p = await compileSources(path.join(ROOT, 'rules/demo/bundle.yaml'), { now: NOW, revision: 1 });
    expect(p.assets.map((a) => a.id)).toEqual(['plc1', 'plc1-ua']);
    expect(p.interlocks?.map((i) => i.id)).toContain('tank1-overfill-ua');
    expect(() => PolicyEngine.fromPayload(p)).not.toThrow();
  });
});
