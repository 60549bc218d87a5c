// What may change while a guarded command waits for its confirming read (docs/safety.md, the
// worst-case window): the enforcement pipeline with its real parts (the engine compiled from
// fixtures/rules/semantics, a real audit log and revocation store on disk, the token registry).
// The interlock engine is replaced by one whose confirming read the test answers when it chooses,
// so the wait has a known inside; everything the pipeline asks after the wait is real.
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
import { RevocationStore } from '../../../src/identity/revocation.js';
import type { InterlockEngine } from '../../../src/interlocks/engine.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { compileSources } from '../../../src/policy/sources.js';
import { bundleResolver } from '../../../src/assets/resolver.js';
import { RESOLVERS } from '../../../protocols/resolvers.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const OPTIMIZER = 'spiffe://plant.example/agent/optimizer';

describe('a guarded command waiting for its confirming read', () => {
  let dir: string;
  const clock = new ManualClock(Date.now());
  let audit: AuditLog;
  let revocations: RevocationStore;
  let pipeline: EnforcementPipeline;
  /** Answers the confirming read in flight. */
  let answer: () => void = () => undefined;
  let confirms = 0;
  const session: Session = { id: 's-1', protocol: 'modbus', workloadId: OPTIMIZER, certThumbprint: 'thumb', remoteAddress: '127.0.0.1', assurance: 'mtls+token' };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-confirm-wait-'));
    const payload = await compileSources(path.join(ROOT, 'fixtures/rules/semantics/bundle.yaml'), { now: clock.now(), revision: 1 });
    const policy = { engine: PolicyEngine.fromPayload(payload), resolver: bundleResolver(RESOLVERS, payload.assets) } as PolicyState;
    revocations = await RevocationStore.open({ stateDir: dir, clock });
    const tokens = new TokenRegistry({ clock, revocations });
    const subject: Subject = {
      workloadId: OPTIMIZER, owner: 'alice@plant.example', taskId: 't-1', taskPurpose: 'tune', jti: 'j-1', roles: [], scopes: ['read', 'write'],
      assurance: 'mtls+token', certThumbprint: 'thumb', issuer: 'https://issuer.dev.plantgate.local', expiresAtMs: clock.now() + 600_000, issuedAtMs: clock.now(),
    };
    tokens.put(OPTIMIZER, subject);
    audit = await AuditLog.open({ dir: path.join(dir, 'audit'), gatewayId: 'gw', clock });
    // Every guarded command asks for a confirming read; the inputs it reads are safe.
    const interlocks = {
      confirm: () => {
        confirms++;
        return { done: new Promise<void>((resolve) => (answer = resolve)), after: 0 };
      },
      check: () => undefined,
    } as unknown as InterlockEngine;
    pipeline = new EnforcementPipeline({ policy, tokens, audit, clock, logger: silentLogger, interlocks: () => interlocks });
  });

  afterAll(async () => {
    await audit?.close();
    await revocations?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const start = () => commandFromRequest('s-1', 1, { fc: 5, address: 0, value: true });

  it('is refused TOKEN_REVOKED when its token is revoked during the wait, and never forwarded', async () => {
    const pending = pipeline.authorize(session, start(), {}) as Promise<Decision>;
    expect(pending).toBeInstanceOf(Promise);
    expect(confirms).toBe(1);
    // The operator revokes the agent while the gateway waits for the PLC's answer.
    await revocations.revoke({ kind: 'sub', value: OPTIMIZER, reason: 'compromised', source: 'operator', by: 'op' });
    answer();
    expect(await pending).toMatchObject({ effect: 'deny', reason: 'TOKEN_REVOKED' });
  });
});
