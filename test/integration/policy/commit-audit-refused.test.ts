// Decide, then commit, at the last gate (docs/policy.md): a write the audit refuses (a full spool)
// spends no rate budget. The enforcement pipeline with its real parts (the engine compiled from
// fixtures/rules/semantics, a real audit log on disk, the token registry, a PolicyMemory); a second
// pipeline with a healthy spool, sharing the memory, shows the budget is whole.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandFromRequest } from '../../../protocols/modbus/command.js';
import { AuditLog } from '../../../src/audit/log.js';
import { ManualClock } from '../../../src/core/clock.js';
import type { Decision, Subject } from '../../../src/core/command.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Session } from '../../../src/core/pipeline.js';
import { EnforcementPipeline } from '../../../src/gateway/pipeline.js';
import type { PolicyState } from '../../../src/gateway/policy-state.js';
import { TokenRegistry } from '../../../src/identity/registry.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { PolicyMemory } from '../../../src/policy/memory.js';
import { compileSources } from '../../../src/policy/sources.js';
import { bundleResolver } from '../../../src/assets/resolver.js';
import { RESOLVERS } from '../../../protocols/resolvers.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const OPTIMIZER = 'spiffe://plant.example/agent/optimizer';

describe('a write the audit refuses', () => {
  let dir: string;
  const clock = new ManualClock(Date.now());
  const memory = new PolicyMemory();
  let full: AuditLog;
  let healthy: AuditLog;
  let policy: PolicyState;
  let tokens: TokenRegistry;
  const session: Session = { id: 's-1', protocol: 'modbus', workloadId: OPTIMIZER, certThumbprint: 'thumb', remoteAddress: '127.0.0.1', assurance: 'mtls+token' };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-commit-audit-'));
    const payload = await compileSources(path.join(ROOT, 'fixtures/rules/semantics/bundle.yaml'), { now: clock.now(), revision: 1 });
    // The pipeline reads the active engine and its resolver from the policy state; nothing else of it.
    policy = { engine: PolicyEngine.fromPayload(payload), resolver: bundleResolver(RESOLVERS, payload.assets) } as PolicyState;
    tokens = new TokenRegistry({ clock });
    const subject: Subject = {
      workloadId: OPTIMIZER, owner: 'alice@plant.example', taskId: 't-1', taskPurpose: 'tune', jti: 'j-1', roles: [], scopes: ['read', 'write'],
      assurance: 'mtls+token', certThumbprint: 'thumb', issuer: 'https://issuer.dev.plantgate.local', expiresAtMs: clock.now() + 600_000, issuedAtMs: clock.now(),
    };
    tokens.put(OPTIMIZER, subject);
    full = await AuditLog.open({ dir: path.join(dir, 'full'), gatewayId: 'gw', clock, maxBytes: 16 * 1024 });
    healthy = await AuditLog.open({ dir: path.join(dir, 'healthy'), gatewayId: 'gw', clock });
  });

  afterAll(async () => {
    await full?.close();
    await healthy?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const pipeline = (audit: AuditLog) => new EnforcementPipeline({ policy, tokens, audit, clock, logger: silentLogger, memory });
  const start = () => commandFromRequest('s-1', 1, { fc: 5, address: 0, value: true });
  const stop = () => commandFromRequest('s-1', 1, { fc: 5, address: 0, value: false });
  const reason = async (d: Decision | Promise<Decision>) => (await d).reason;

  it('spends none of the rule’s rate budget', async () => {
    const refusing = pipeline(full);
    // Fill the spool with read records until it refuses what changes the process.
    while (!full.isFull()) refusing.authorize(session, commandFromRequest('s-1', 1, { fc: 4, address: 0, quantity: 1 }), {});
    for (let i = 0; i < 3; i++) expect(await reason(refusing.authorize(session, start(), {}))).toBe('AUDIT_UNAVAILABLE');

    // The pump rule allows 2 a minute: the refused starts spent none of it.
    const serving = pipeline(healthy);
    expect(await reason(serving.authorize(session, start(), {}))).toBe('ALLOWED');
    expect(await reason(serving.authorize(session, stop(), {}))).toBe('ALLOWED');
    expect(await reason(serving.authorize(session, start(), {}))).toBe('RATE_LIMITED');
  });
});
