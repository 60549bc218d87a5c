// Interlocks and approvals end to end, short of the gateway's own wiring: the demo bundle's policy
// engine, a process image polling the simulated PLC over Modbus/TCP, the approval store on disk,
// the operator API over HTTPS with real operator JWTs, and allowed commands forwarded to the PLC
// through an upstream pool. `safetyStep` below is exactly the snippet the pipeline gets (see the
// issue-5 report); once it is wired, these cases move onto the real gateway and agents.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SignJWT, importJWK, type JWK } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startOperatorApi } from '../../../src/admin/operator-api.js';
import { ApprovalStore, type ApprovalRequest } from '../../../src/approvals/store.js';
import { callOperatorApi, type ApiTarget } from '../../../src/cli/commands/approvals.js';
import { ManualClock } from '../../../src/core/clock.js';
import { deny, type Command, type Decision, type Subject } from '../../../src/core/command.js';
import { silentLogger } from '../../../src/core/log.js';
import { initPki } from '../../../src/identity/dev/pki.js';
import { trustedIssuersFromJwks } from '../../../src/identity/issuers.js';
import { RevocationStore } from '../../../src/identity/revocation.js';
import { TokenRegistry } from '../../../src/identity/registry.js';
import { compileInterlocksText } from '../../../src/interlocks/compile.js';
import { InterlockEngine, processInputs, type InterlockTrip } from '../../../src/interlocks/engine.js';
import { ProcessImage } from '../../../src/interlocks/process-image.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { compileSources } from '../../../src/policy/sources.js';
import { startSimulator, type SimHandle } from '../../../src/sim/modbus-server.js';
import { commandFromRequest } from '../../../protocols/modbus/command.js';
import { encodeRequest, type Request } from '../../../protocols/modbus/codec.js';
import { UpstreamPool } from '../../../protocols/modbus/upstream.js';
import { resolveModbus } from '../../resolve.js';
import { ModbusRegisterReader } from '../../../protocols/modbus/register-reader.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const ISSUER = 'https://issuer.dev.plantgate.local';
const INTERLOCKS = `
interlocks:
  - id: pump1-dry-run
    description: never start the feed pump on a nearly empty tank
    asset: plc1
    guards: ["pump1.run := 1"]
    deny_when: tank1.level < 10
    poll: 250ms
    max_age: 1s
`;

function subject(workload: string, owner: string, taskId = 'task-1'): Subject {
  return {
    workloadId: workload, owner, taskId, taskPurpose: 'drain for inspection', jti: `j-${taskId}`, roles: [], scopes: ['read', 'write'],
    assurance: 'mtls+token', issuer: ISSUER, expiresAtMs: Number.MAX_SAFE_INTEGER, issuedAtMs: 0,
  };
}
const OPTIMIZER = subject('spiffe://plant.example/agent/optimizer', 'alice@plant.example');
const PLANNER = subject('spiffe://plant.example/agent/planner', 'alice@plant.example');

let dir: string;
let clock: ManualClock;
let sim: SimHandle;
let policy: PolicyEngine;
let image: ProcessImage;
let interlocks: InterlockEngine;
let approvals: ApprovalStore;
let upstream: UpstreamPool;
let revocations: RevocationStore | undefined;
let operatorApi: { port: number; close(): Promise<void> };
let caPem: Buffer;
let issuerKey: JWK;
const decided: { request: ApprovalRequest; by: string }[] = [];
const trips: InterlockTrip[] = [];

/**
 * The pipeline's safety step (issue 5), after policy decided. Interlocks run on what policy would
 * allow (an allow, or an APPROVAL_REQUIRED that a grant could turn into one): a human approval
 * never overrides an interlock.
 */
function safetyStep(cmd: Command, sub: Subject, decision: Decision, now: number): Decision {
  if (decision.effect === 'allow' || decision.reason === 'APPROVAL_REQUIRED') {
    const trip = interlocks.check(cmd, now);
    if (trip !== undefined) {
      trips.push(trip); // the gateway audits the trip: inputs with values and ages
      return { ...deny(trip.reason, decision.ruleId, decision.bundleRevision), interlockId: trip.interlockId };
    }
  }
  if (decision.effect === 'deny' && decision.reason === 'APPROVAL_REQUIRED') {
    const grant = approvals.consume(cmd, sub, now);
    if (grant !== undefined) return { ...decision, effect: 'allow', reason: 'ALLOWED', approvalId: grant };
    const pending = approvals.request(cmd, sub, decision.ruleId, now);
    return pending === undefined ? decision : { ...decision, approvalId: pending };
  }
  return decision;
}

/** An agent's Modbus request through policy and the safety step; forwarded to the PLC when allowed. */
async function send(sub: Subject, req: Request): Promise<Decision> {
  const cmd = commandFromRequest('sess-1', 1, req);
  resolveModbus(policy, cmd, 1);
  const now = clock.now();
  const decision = safetyStep(cmd, sub, policy.decide(cmd, sub, now), now);
  if (decision.effect === 'allow') {
    await approvals.whenDurable();
    await new Promise<void>((resolve, reject) =>
      upstream.send(1, encodeRequest(req), req, (r) => (r.kind === 'response' ? resolve() : reject(new Error(`upstream ${r.kind}`)))),
    );
  }
  return decision;
}

const startPump: Request = { fc: 5, address: 0, value: true };
const stopPump: Request = { fc: 5, address: 0, value: false };
const openDrain: Request = { fc: 5, address: 1, value: true };
const closeDrain: Request = { fc: 5, address: 1, value: false };

async function operatorToken(sub: string, roles: string[]): Promise<string> {
  const iat = Math.floor(clock.now() / 1000);
  return new SignJWT({ roles })
    .setProtectedHeader({ alg: 'EdDSA', kid: issuerKey.kid })
    .setIssuer(ISSUER).setSubject(sub).setAudience(policy.audience).setIssuedAt(iat).setExpirationTime(iat + 300).setJti(`op-${sub}-${iat}`)
    .sign(await importJWK(issuerKey, 'EdDSA'));
}
async function asOperator(sub: string, roles = ['operator']): Promise<ApiTarget> {
  return { api: `https://127.0.0.1:${operatorApi.port}`, token: await operatorToken(sub, roles), ca: caPem };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-safety-'));
  clock = new ManualClock(Date.now());
  sim = await startSimulator({ plant: path.join(ROOT, 'fixtures/plants/water-treatment.yaml'), port: 0, clock: new ManualClock() });
  sim.write('control.auto', 0);
  const payload = await compileSources(path.join(ROOT, 'rules/demo/bundle.yaml'), { now: clock.now(), revision: 1 });
  policy = PolicyEngine.fromPayload(payload);
  const compiled = compileInterlocksText(INTERLOCKS, 'interlocks.yaml', payload.assets);
  expect(compiled.errors).toEqual([]);
  image = new ProcessImage({
    inputs: processInputs(compiled.interlocks, payload.assets),
    modbus: { endpoint: () => ({ host: '127.0.0.1', port: sim.port, unitId: 1 }), connect: (ep) => new ModbusRegisterReader(ep, { timeoutMs: 300, logger: silentLogger }) },
    clock,
  });
  interlocks = new InterlockEngine(compiled.interlocks, payload.assets, image);
  approvals = await ApprovalStore.open({ stateDir: path.join(dir, 'approvals'), grantTtlMs: 120_000 });
  upstream = new UpstreamPool({ host: '127.0.0.1', port: sim.port, connections: 1 });
  await Promise.all([image.ready(), upstream.ready()]);

  const pki = await initPki(path.join(dir, 'pki'), { agents: [], gatewayHosts: ['127.0.0.1'] });
  caPem = await readFile(pki.ca.cert);
  issuerKey = JSON.parse(await readFile(path.join(ROOT, 'fixtures/keys/dev-issuer.private.jwk.json'), 'utf8')) as JWK;
  const issuers = trustedIssuersFromJwks(payload.issuers);
  revocations = await RevocationStore.open({ stateDir: path.join(dir, 'identity'), clock });
  operatorApi = await startOperatorApi(
    { host: '127.0.0.1', port: 0, tls: { cert: await readFile(pki.gateway.cert), key: await readFile(pki.gateway.key) } },
    {
      trust: () => ({ issuers, audience: policy.audience, maxTokenTtlSec: policy.maxTokenTtlSec }),
      revocations,
      tokens: new TokenRegistry({ clock, revocations }),
      clock,
      leewaySec: 30,
      logger: silentLogger,
      onRevoked: () => undefined,
      onRefused: () => undefined,
      approvals,
      onApprovalDecided: (request, op) => decided.push({ request, by: op.sub }),
    },
  );
}, 30_000);

afterAll(async () => {
  await operatorApi?.close();
  // Its append-only file stays open until closed (left to the garbage collector it warned DEP0137).
  await revocations?.close();
  image?.close();
  upstream?.close();
  await approvals?.close();
  await sim?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('interlocks on live process values', () => {
  it('refuses to start the pump while the simulated tank is drained, and allows it once the level recovers', async () => {
    await send(OPTIMIZER, stopPump);
    sim.write('tank1.level', 4.5);
    await image.pollNow();
    const refused = await send(OPTIMIZER, startPump);
    expect(refused).toMatchObject({ effect: 'deny', reason: 'INTERLOCK', interlockId: 'pump1-dry-run', ruleId: 'optimizer-pump' });
    expect(trips.at(-1)?.inputs).toEqual([{ point: 'plc1/tank1.level', value: 4.5, ageMs: 0, maxAgeMs: 1000 }]);
    expect(sim.read('pump1.run')).toBe(0);

    sim.write('tank1.level', 35);
    clock.advance(250);
    await image.pollDue();
    expect(await send(OPTIMIZER, startPump)).toMatchObject({ effect: 'allow', reason: 'ALLOWED' });
    expect(sim.read('pump1.run')).toBe(1);
    // Stopping is never interlocked.
    sim.write('tank1.level', 2);
    await image.pollNow();
    expect((await send(OPTIMIZER, stopPump)).effect).toBe('allow');
  });

  it('fails closed with INTERLOCK_INPUT_STALE when the gateway can no longer read the inputs', async () => {
    sim.write('tank1.level', 60);
    await image.pollNow();
    expect((await send(OPTIMIZER, startPump)).effect).toBe('allow');
    await send(OPTIMIZER, stopPump);
    // The poll target stops answering on the process image's connection: values age past max_age.
    sim.inject({ kind: 'timeout', unit: 1, fc: [4] });
    clock.advance(1001);
    await image.pollDue();
    const d = await send(OPTIMIZER, startPump);
    expect(d).toMatchObject({ effect: 'deny', reason: 'INTERLOCK_INPUT_STALE', interlockId: 'pump1-dry-run' });
    expect(trips.at(-1)?.inputs[0]).toMatchObject({ value: 60, ageMs: 1001 });
    sim.clearFaults();
    await image.pollNow();
    expect((await send(OPTIMIZER, startPump)).effect).toBe('allow');
    await send(OPTIMIZER, stopPump);
  });
});

describe('human approval bound to the exact command', () => {
  // Past the request lifetime, so every earlier request, grant and rejection has lapsed; the valve
  // closed and the process image read at the new time.
  beforeEach(async () => {
    clock.advance(15 * 60_000 + 1);
    sim.write('valve1.open', 0);
    await image.pollNow();
  });

  it('denies the first attempt APPROVAL_REQUIRED, shows it to operators, allows the identical retry once', async () => {
    const first = await send(PLANNER, openDrain);
    expect(first).toMatchObject({ effect: 'deny', reason: 'APPROVAL_REQUIRED', ruleId: 'planner-drain' });
    const id = first.approvalId!;
    expect(id).toMatch(/^apr-/);
    expect((await send(PLANNER, openDrain)).approvalId).toBe(id);

    const bob = await asOperator('bob@plant.example');
    const listed = await callOperatorApi(bob, 'GET', 'v1/approvals');
    expect(listed.status).toBe(200);
    expect(listed.body.approvals).toEqual([
      expect.objectContaining({ id, status: 'pending', asset: 'plc1', operation: 'write', points: ['valve1.open'], values: { 'valve1.open': 1 }, workload: PLANNER.workloadId, owner: 'alice@plant.example', task: { id: 'task-1', purpose: 'drain for inspection' } }),
    ]);

    // Two-person rule: the agent's owner may not approve its own agent's command.
    const alice = await asOperator('alice@plant.example');
    const own = await callOperatorApi(alice, 'POST', `v1/approvals/${id}/approve`, { reason: 'mine' });
    expect(own).toMatchObject({ status: 403, body: { reason: 'APPROVAL_INVALID', detail: 'SAME_PERSON' } });
    // An owner-role token is not an operator.
    const ownerRole = await callOperatorApi(await asOperator('dave@plant.example', ['owner']), 'POST', `v1/approvals/${id}/approve`, { reason: 'x' });
    expect(ownerRole).toMatchObject({ status: 403, body: { reason: 'SCOPE_MISSING', detail: 'NOT_OPERATOR' } });
    expect(await send(PLANNER, openDrain)).toMatchObject({ effect: 'deny', reason: 'APPROVAL_REQUIRED' });

    const ok = await callOperatorApi(bob, 'POST', `v1/approvals/${id}/approve`, { reason: 'inspection at 14:00' });
    expect(ok).toMatchObject({ status: 200, body: { status: 'approved', approval: { id, decided_by: 'bob@plant.example', reason: 'inspection at 14:00' } } });
    expect(decided.at(-1)).toMatchObject({ by: 'bob@plant.example', request: { id, status: 'approved' } });

    // A different value, target or subject is still denied and does not use the grant.
    expect((await send(PLANNER, closeDrain)).effect).toBe('deny');
    expect((await send(subject(PLANNER.workloadId, PLANNER.owner, 'other-task'), openDrain)).effect).toBe('deny');
    expect(sim.read('valve1.open')).toBe(0);

    expect(await send(PLANNER, openDrain)).toMatchObject({ effect: 'allow', reason: 'ALLOWED', approvalId: id });
    expect(sim.read('valve1.open')).toBe(1);
    const again = await send(PLANNER, openDrain);
    expect(again).toMatchObject({ effect: 'deny', reason: 'APPROVAL_REQUIRED' });
    expect(again.approvalId).not.toBe(id);
    const consumed = await callOperatorApi(bob, 'GET', 'v1/approvals?status=consumed');
    expect(consumed.body.approvals).toEqual([expect.objectContaining({ id, status: 'consumed' })]);
  });

  it('denies the retry once the grant has expired', async () => {
    sim.write('valve1.open', 0);
    const id = (await send(PLANNER, closeDrain)).approvalId!;
    const bob = await asOperator('bob@plant.example');
    expect((await callOperatorApi(bob, 'POST', `v1/approvals/${id}/approve`, { reason: 'ok' })).status).toBe(200);
    clock.advance(120_001);
    expect(await send(PLANNER, closeDrain)).toMatchObject({ effect: 'deny', reason: 'APPROVAL_REQUIRED' });
  });

  it('rejects with a reason: the identical retry stays denied under the same request', async () => {
    const id = (await send(PLANNER, openDrain)).approvalId!;
    const bob = await asOperator('bob@plant.example');
    const r = await callOperatorApi(bob, 'POST', `v1/approvals/${id}/reject`, { reason: 'not during backwash' });
    expect(r).toMatchObject({ status: 200, body: { status: 'rejected', approval: { reason: 'not during backwash' } } });
    expect(await send(PLANNER, openDrain)).toMatchObject({ effect: 'deny', reason: 'APPROVAL_REQUIRED', approvalId: id });
    expect((await callOperatorApi(bob, 'POST', `v1/approvals/${id}/approve`, { reason: 'late' })).status).toBe(409);
  });

  it('never lets an approval override an interlock', async () => {
    const interlocked = compileInterlocksText(
      `interlocks:\n  - id: no-drain-when-low\n    asset: plc1\n    guards: ["valve1.open := 1"]\n    deny_when: tank1.level < 10\n`,
      'i.yaml',
      [{ ...policy.asset('plc1')! }],
    );
    const saved = interlocks;
    const img = new ProcessImage({ inputs: processInputs(interlocked.interlocks, [policy.asset('plc1')!]), modbus: { endpoint: () => ({ host: '127.0.0.1', port: sim.port, unitId: 1 }), connect: (ep) => new ModbusRegisterReader(ep, { timeoutMs: 1000, logger: silentLogger }) }, clock });
    try {
      interlocks = new InterlockEngine(interlocked.interlocks, [policy.asset('plc1')!], img);
      sim.write('tank1.level', 5);
      await img.ready();
      await img.pollNow();
      const d = await send(subject(PLANNER.workloadId, PLANNER.owner, 'task-9'), openDrain);
      expect(d).toMatchObject({ effect: 'deny', reason: 'INTERLOCK', interlockId: 'no-drain-when-low' });
      expect(d.approvalId).toBeUndefined();
    } finally {
      interlocks = saved;
      img.close();
    }
  });
});
