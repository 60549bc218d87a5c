// The agent API's GET /v1/decisions and the operator API's bundle endpoints and auth, over real
// HTTPS against the loopback lab (real gateway, simulator, signed bundle, audit spool).
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeProtectedHeader } from 'jose';
import { ManualClock } from '../../../src/core/clock.js';
import { connectModbusAgent, exceptionCodeOf, putToken, type AgentCredentials, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { pb } from '../../../src/audit/schema.js';

type Answer = { status: number; body: Record<string, unknown> };

function call(port: number, method: string, p: string, opts: { ca: Buffer; bearer?: string; body?: string; creds?: AgentCredentials }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = opts.body ?? '';
    const req = https.request(
      {
        host: '127.0.0.1', port, method, path: p, servername: 'localhost', agent: false, ca: opts.ca,
        ...(opts.creds ? { cert: opts.creds.cert, key: opts.creds.key } : {}),
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(opts.bearer ? { authorization: `Bearer ${opts.bearer}` } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          expect(res.headers['content-type']).toBe('application/json');
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('agent and operator APIs on the lab gateway', () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let optimizer: ModbusAgent;
  let optimizerCreds: AgentCredentials;
  let reporterCreds: AgentCredentials;

  const agentCall = (creds: AgentCredentials, p: string) => call(lab.gateway.agentApi.port, 'GET', p, { ca: creds.ca, creds });
  const operatorCall = (method: string, p: string, bearer?: string, body?: string) =>
    call(lab.gateway.operatorApi!.port, method, p, { ca: optimizerCreds.ca, bearer, body });
  const auditSince = async (seq: number) => {
    await lab.gateway.audit.sync();
    return (await lab.gateway.audit.readFrom(seq, 10_000)).map((r) => pb.AuditRecord.decode(r.bytes));
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-admin-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock });
    optimizerCreds = await lab.credentials('optimizer');
    reporterCreds = await lab.credentials('reporter');
    const api = lab.gateway.agentApi;
    expect((await putToken(api.host, api.port, optimizerCreds, await lab.token('optimizer', { now: clock.now() }))).status).toBe(200);
    optimizer = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, optimizerCreds);
  });

  afterAll(async () => {
    await optimizer?.close();
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('GET /v1/decisions (agent API, mTLS identity)', () => {
    it('tells an agent why its write was refused: VALUE_OUT_OF_BOUNDS, the rule, the point and exception 0x03, newest first', async () => {
      await optimizer.client.writeRegister(0, 600);
      let code: number | undefined;
      await optimizer.client.writeRegister(0, 950).catch((err: unknown) => (code = exceptionCodeOf(err)));
      expect(code).toBe(0x03);

      const a = await agentCall(optimizerCreds, '/v1/decisions?limit=2');
      expect(a.status).toBe(200);
      expect(a.body.workload).toBe('spiffe://plant.example/agent/optimizer');
      const [denied, allowed] = a.body.decisions as Record<string, unknown>[];
      expect(denied).toMatchObject({
        effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS', rule: 'optimizer-setpoint', asset: 'plc1', operation: 'write',
        points: ['tank1.setpoint'], targets: ['holding 0 x1'], modbus_exception: 0x03, bundle_revision: 1,
      });
      expect(allowed).toMatchObject({ effect: 'allow', reason: 'ALLOWED', points: ['tank1.setpoint'], modbus_exception: 0 });
      // The allowed write was durable before it ran: its audit sequence number is on the view.
      expect(typeof allowed!.audit_seq).toBe('number');
      expect((a.body.decisions as unknown[]).length).toBe(2);
    });

    it('shows an agent only its own decisions, never another workload\'s', async () => {
      const a = await agentCall(reporterCreds, '/v1/decisions');
      expect(a.status).toBe(200);
      expect(a.body.workload).toBe('spiffe://plant.example/agent/reporter');
      expect(a.body.decisions).toEqual([]);
    });

    it.each(['0', 'abc', '101', '-1', '1.5'])('answers 400 naming the limit for limit=%s', async (limit) => {
      const a = await agentCall(optimizerCreds, `/v1/decisions?limit=${limit}`);
      expect(a.status).toBe(400);
      expect(a.body).toMatchObject({ reason: 'PROTOCOL_VIOLATION', detail: 'BAD_LIMIT' });
      expect(String(a.body.message)).toContain('limit must be an integer from 1 to 100');
    });

    it('answers 404 with a JSON body listing the endpoints for an unknown path', async () => {
      const a = await agentCall(optimizerCreds, '/v1/nothing');
      expect(a.status).toBe(404);
      expect(String(a.body.message)).toContain('GET /v1/decisions');
    });
  });

  // In order (make test-shuffle keeps it): the first case shows the load at start, the later ones reload.
  describe('GET /v1/bundle and POST /v1/bundle/reload (operator API)', { shuffle: false }, () => {
    it('shows the active bundle: name, revision, validity, key id, digest of the signed file and the last load', async () => {
      const jws = (await readFile(lab.bundleFile, 'utf8')).trim();
      const a = await operatorCall('GET', '/v1/bundle', await lab.operatorToken({ now: clock.now() }));
      expect(a.status).toBe(200);
      const b = a.body.bundle as { state: string; active: Record<string, unknown>; last_load: Record<string, unknown> };
      expect(b.state).toBe('active');
      expect(b.active).toMatchObject({
        revision: 1,
        key_id: decodeProtectedHeader(jws).kid,
        digest: createHash('sha256').update(jws).digest('hex'),
        source: lab.bundleFile,
      });
      expect(typeof b.active.name).toBe('string');
      expect(Date.parse(String(b.active.expires_at))).toBeGreaterThan(clock.now());
      expect(b.last_load).toMatchObject({ ok: true, trigger: 'start', revision: 1 });
    });

    it('reloads on request and records who asked in the audit bundle record', async () => {
      const from = lab.gateway.audit.nextSeq;
      const a = await operatorCall('POST', '/v1/bundle/reload', await lab.operatorToken({ now: clock.now() }));
      expect(a.status).toBe(200);
      expect(a.body.status).toBe('loaded');
      expect((a.body.bundle as { last_load: Record<string, unknown> }).last_load).toMatchObject({ ok: true, trigger: 'operator bob@plant.example' });
      const rec = (await auditSince(from)).find((r) => r.bundle);
      expect(rec?.bundle).toMatchObject({ kind: 'loaded', detail: 'trigger: operator bob@plant.example' });
      expect(rec?.bundle?.digest).toMatch(/^[0-9a-f]{64}$/);
    });

    it('refuses a corrupted bundle file with 422 and keeps enforcing the active bundle', async () => {
      const good = await readFile(lab.bundleFile);
      await writeFile(lab.bundleFile, 'not a signed bundle\n');
      try {
        const from = lab.gateway.audit.nextSeq;
        const a = await operatorCall('POST', '/v1/bundle/reload', await lab.operatorToken({ now: clock.now() }));
        expect(a.status).toBe(422);
        expect(a.body).toMatchObject({ status: 'refused', reason: 'BUNDLE_UNAVAILABLE' });
        const b = a.body.bundle as { state: string; active: Record<string, unknown>; last_load: Record<string, unknown> };
        expect(b.state).toBe('active');
        expect(b.active.revision).toBe(1);
        expect(b.last_load).toMatchObject({ ok: false, trigger: 'operator bob@plant.example' });
        expect((await auditSince(from)).some((r) => r.bundle?.kind === 'rejected' && r.bundle.reason === 'BUNDLE_UNAVAILABLE')).toBe(true);
        // Still enforcing: a read the bundle allows goes through.
        await expect(optimizer.client.readInputRegisters(0, 1)).resolves.toBeDefined();
      } finally {
        await writeFile(lab.bundleFile, good);
      }
    });
  });

  describe('operator API authentication: every refused call answers 401/403 with a JSON reason and is audited', () => {
    const endpoints: [string, string, string?][] = [
      ['GET', '/v1/bundle'],
      ['POST', '/v1/bundle/reload'],
      ['GET', '/v1/approvals'],
      ['POST', '/v1/approvals/apr-1/approve', '{"reason":"ok"}'],
      ['GET', '/v1/revocations'],
      ['POST', '/v1/revocations', '{"jti":"x","reason":"y"}'],
    ];

    async function expectAuditedRefusal(method: string, p: string, bearer: string | undefined, body: string | undefined, status: number, reason: string) {
      const from = lab.gateway.audit.nextSeq;
      const a = await operatorCall(method, p, bearer, body);
      expect(a.status).toBe(status);
      expect(a.body.reason).toBe(reason);
      expect(typeof a.body.message).toBe('string');
      const recs = await auditSince(from);
      expect(recs.some((r) => r.token?.kind === 'rejected' && r.token.reason === reason && String(r.token.detail ?? "").startsWith(`operator API ${method} ${p} `))).toBe(true);
    }

    it.each(endpoints)('%s %s without a bearer token: 401 NO_TOKEN', async (method, p, body) => {
      await expectAuditedRefusal(method, p, undefined, body, 401, 'NO_TOKEN');
    });

    it.each(endpoints)('%s %s with a forged token: 401 TOKEN_INVALID', async (method, p, body) => {
      const good = await lab.operatorToken({ now: clock.now() });
      const [h, c] = good.split('.');
      const forged = `${h}.${c}.${Buffer.from('not the signature of this token, not at all.....').toString('base64url')}`;
      await expectAuditedRefusal(method, p, forged, body, 401, 'TOKEN_INVALID');
    });

    it.each(endpoints)('%s %s with an expired token: 401 TOKEN_EXPIRED', async (method, p, body) => {
      const old = await lab.operatorToken({ now: clock.now() - 3_600_000 });
      await expectAuditedRefusal(method, p, old, body, 401, 'TOKEN_EXPIRED');
    });

    it.each(endpoints.filter(([, p]) => !p.startsWith('/v1/revocations')))('%s %s with the owner role (not operator): 403 SCOPE_MISSING', async (method, p, body) => {
      await expectAuditedRefusal(method, p, await lab.operatorToken({ now: clock.now(), roles: ['owner'] }), body, 403, 'SCOPE_MISSING');
    });

    it.each(endpoints)('%s %s with no operator or owner role: 403 SCOPE_MISSING', async (method, p, body) => {
      await expectAuditedRefusal(method, p, await lab.operatorToken({ now: clock.now(), roles: ['viewer'] }), body, 403, 'SCOPE_MISSING');
    });

    it('answers 404 with a JSON body for an unknown operator path', async () => {
      const a = await operatorCall('GET', '/v1/nothing', await lab.operatorToken({ now: clock.now() }));
      expect(a.status).toBe(404);
      expect(String(a.body.message)).toContain('/v1/bundle');
    });
  });
});
