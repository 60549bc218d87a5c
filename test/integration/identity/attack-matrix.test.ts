// The identity attack matrix (issue 8) over real mutual TLS through the loopback lab: a simulated
// PLC, the gateway started from a YAML config, the agent API, and the operator API with a revocation
// store on disk. Every attack must be refused with its precise reason code and leave an audit record.
//
// WIRING (until the lead wires it in src/gateway/gateway.ts): `wireIdentity` below attaches the
// revocation store to the gateway's TokenRegistry and starts the operator API exactly as the
// snippet in the issue-8 report does; the "after bundle reload" case calls tokens.retainTrusted
// itself, as the gateway's reloadBundle will.
import https from 'node:https';
import { X509Certificate, createPrivateKey, sign as cryptoSign } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { generateKeyPair, SignJWT, exportJWK, type JWK, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenIntake } from '../../../src/identity/intake.js';
import { startAgentApi } from '../../../src/admin/agent-api.js';
import { startOperatorApi } from '../../../src/admin/operator-api.js';
import { silentLogger } from '../../../src/core/log.js';
import { pb } from '../../../src/audit/schema.js';
import { tokenRecord } from '../../../src/audit/records.js';
import { connectModbusAgent, exceptionCodeOf, putToken, type AgentCredentials, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { DEMO_AGENTS, DEV_ISSUER, PACKAGE_ROOT, startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { ManualClock } from '../../../src/core/clock.js';
import { certificateThumbprint } from '../../../src/identity/cert.js';
import { initPki, issueClientCertificate } from '../../../src/identity/dev/pki.js';
import { DEFAULT_MAX_TOKENS_PER_IDENTITY } from '../../../src/identity/registry.js';
import { RevocationStore, type Revocation } from '../../../src/identity/revocation.js';
import { MAX_TOKEN_LENGTH } from '../../../src/identity/verify.js';
import { signBundle, writeBundleFile } from '../../../src/policy/bundle.js';
import { compileSources } from '../../../src/policy/sources.js';

const OPTIMIZER = DEMO_AGENTS.optimizer;
const OWNER = 'alice@plant.example';

let dir: string;
let lab: Lab;
let clock: ManualClock;
let revocations: RevocationStore;
let operatorApi: { port: number; close(): Promise<void> };
/** The agent API as the gateway will start it once wired: with revocations (task-complete). */
let agentApi: { port: number; close(): Promise<void> };
let issuerKey: JWK;
let optimizerCreds: AgentCredentials;
let optimizerThumbprint: string;
let reporterThumbprint: string;

/** The wiring the gateway will do (see the report): revocations into the registry, the operator API, audit callbacks. */
async function wireIdentity(): Promise<void> {
  const gw = lab.gateway;
  revocations = await RevocationStore.open({ stateDir: path.join(dir, 'identity-test'), clock });
  gw.tokens.attachRevocations(revocations);
  const [cert, key] = await Promise.all([readFile(lab.pki.gateway.cert), readFile(lab.pki.gateway.key)]);
  const revokedRecord = (r: Revocation, by: string) =>
    tokenRecord({
      kind: 'revoked' as 'accepted',
      sessionId: '',
      subject: {
        workloadId: r.kind === 'sub' || r.kind === 'task' ? (r.workloadId ?? r.value) : '', owner: r.kind === 'owner' ? r.value : (r.owner ?? ''),
        taskId: r.kind === 'task' ? r.value : '', taskPurpose: '', jti: r.kind === 'jti' ? r.value : '', roles: [], scopes: [],
        assurance: 'none', issuer: '', expiresAtMs: 0, issuedAtMs: 0,
      },
      reason: 'TOKEN_REVOKED',
      detail: `${r.kind}=${r.value} by ${by} (${r.source}): ${r.reason}`,
    });
  agentApi = await startAgentApi(
    { host: '127.0.0.1', port: 0, tls: { ca: await readFile(lab.pki.ca.cert), cert, key } },
    {
      intake: new TokenIntake({
        trust: () => {
          const engine = gw.policy.engine;
          const issuers = gw.policy.issuers;
          return engine === undefined || issuers === undefined ? undefined : { issuers, audience: engine.audience, maxTokenTtlSec: engine.maxTokenTtlSec };
        },
        clock,
        leewaySec: 30,
        revocations,
        onAccepted: () => true,
      }),
      tokens: gw.tokens,
      logger: silentLogger,
      revocations,
      onTaskCompleted: (workloadId, r) => gw.audit.append(revokedRecord(r, workloadId)),
    },
  );
  operatorApi = await startOperatorApi(
    { host: '127.0.0.1', port: 0, tls: { cert, key } },
    {
      trust: () => {
        const engine = gw.policy.engine;
        const issuers = gw.policy.issuers;
        return engine === undefined || issuers === undefined ? undefined : { issuers, audience: engine.audience, maxTokenTtlSec: engine.maxTokenTtlSec };
      },
      revocations,
      tokens: gw.tokens,
      clock,
      leewaySec: 30,
      logger: silentLogger,
      onRevoked: (r, op) => gw.audit.append(revokedRecord(r, op.sub)),
      onRefused: (call) =>
        gw.audit.append(
          tokenRecord({
            kind: 'rejected', sessionId: '',
            subject: { workloadId: '', owner: call.operatorSub, taskId: '', taskPurpose: '', jti: '', roles: [], scopes: [], assurance: 'none', issuer: '', expiresAtMs: 0, issuedAtMs: 0 },
            reason: call.reason, detail: `operator ${call.method} ${call.path}: ${call.detail}`,
          }),
        ),
    },
  );
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-attack-'));
  clock = new ManualClock(Date.now());
  lab = await startLab({ stateDir: dir, gatewayClock: clock });
  await wireIdentity();
  issuerKey = JSON.parse(await readFile(path.join(PACKAGE_ROOT, 'fixtures/keys/dev-issuer.private.jwk.json'), 'utf8')) as JWK;
  optimizerCreds = await lab.credentials('optimizer');
  optimizerThumbprint = certificateThumbprint(new X509Certificate(optimizerCreds.cert));
  reporterThumbprint = certificateThumbprint(new X509Certificate((await lab.credentials('reporter')).cert));
}, 30_000);

afterAll(async () => {
  await operatorApi?.close();
  await agentApi?.close();
  await revocations?.close();
  await lab?.close();
  await rm(dir, { recursive: true, force: true });
});

// ---- helpers ----

let jtiCounter = 0;
/** The claims of a good optimizer token; each case breaks one thing. */
function goodClaims(over: Record<string, unknown> = {}): JWTPayload {
  const iat = Math.floor(clock.now() / 1000);
  return {
    iss: DEV_ISSUER, sub: OPTIMIZER, aud: lab.audience, iat, exp: iat + 300, jti: `attack-${++jtiCounter}`,
    owner: OWNER, task: { id: 'tune-level', purpose: 'optimize tank level setpoint' }, scope: 'read write',
    cnf: { 'x5t#S256': optimizerThumbprint }, ...over,
  };
}

async function sign(claims: JWTPayload, opts: { key?: JWK; header?: Record<string, unknown> } = {}): Promise<string> {
  const key = opts.key ?? issuerKey;
  const payload = Object.fromEntries(Object.entries(claims).filter(([, v]) => v !== undefined));
  return new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: key.kid, ...opts.header } as { alg: string }).sign(
    await (await import('jose')).importJWK(key, 'EdDSA'),
  );
}

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

/** Audit records written since `seq` (after an fsync), decoded. */
async function auditSince(seq: number): Promise<InstanceType<typeof pb.AuditRecord>[]> {
  await lab.gateway.audit.sync();
  const rows = await lab.gateway.audit.readFrom(seq, 10_000);
  return rows.map((r) => pb.AuditRecord.decode(r.bytes));
}

async function put(token: string, creds: AgentCredentials = optimizerCreds) {
  const api = lab.gateway.agentApi;
  return putToken(api.host, api.port, creds, token);
}

/** Asserts the agent API refused the token with `reason`/`detail`, and that a token record says so. */
async function expectRefused(token: string, reason: string, detail: string, creds?: AgentCredentials): Promise<void> {
  const from = lab.gateway.audit.nextSeq;
  const answer = await put(token, creds);
  expect(answer.body.reason).toBe(reason);
  expect(answer.body.detail).toBe(detail);
  expect(answer.status).toBeGreaterThanOrEqual(400);
  const records = await auditSince(from);
  expect(records.some((r) => r.token?.kind === 'rejected' && r.token.reason === reason && r.token.detail === detail)).toBe(true);
}

function request(port: number, method: string, p: string, opts: { bearer?: string; body?: string; creds?: AgentCredentials } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const body = opts.body ?? '';
    const req = https.request(
      {
        host: '127.0.0.1', port, method, path: p, servername: 'localhost', agent: false,
        ca: optimizerCreds.ca, ...(opts.creds ? { cert: opts.creds.cert, key: opts.creds.key } : {}),
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(opts.bearer ? { authorization: `Bearer ${opts.bearer}` } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown> }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function operatorToken(sub: string, roles: string[] | undefined): Promise<string> {
  const iat = Math.floor(clock.now() / 1000);
  return sign({ iss: DEV_ISSUER, sub, aud: lab.audience, iat, exp: iat + 300, jti: `op-${++jtiCounter}`, ...(roles ? { roles } : {}) });
}

async function revoke(bearer: string, body: Record<string, unknown>) {
  return request(operatorApi.port, 'POST', '/v1/revocations', { bearer, body: JSON.stringify(body) });
}

async function commandReason(agent: ModbusAgent): Promise<{ exception: number | undefined; reason: string | undefined }> {
  const from = lab.gateway.audit.nextSeq;
  let exception: number | undefined;
  try {
    await agent.client.readInputRegisters(0, 1);
  } catch (err) {
    exception = exceptionCodeOf(err);
  }
  const records = await auditSince(from);
  const decision = records.find((r) => r.decision)?.decision?.decision;
  return { exception, reason: decision?.reason ?? undefined };
}

/** Connects with a certificate and reports whether the gateway kept the connection and what it audited. */
async function tlsAttempt(creds: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<{ closedByGateway: boolean; violation: string | undefined }> {
  const from = lab.gateway.audit.nextSeq;
  const closed = await new Promise<boolean>((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: lab.gateway.modbus.port, servername: 'localhost', ...creds });
    s.on('error', () => resolve(true));
    s.on('close', () => resolve(true));
    s.on('secureConnect', () => {
      // TLS 1.3: the server checks the client certificate after the client's handshake completes;
      // a refused peer sees the connection close, an accepted one would answer this read.
      s.write(Buffer.from([0, 1, 0, 0, 0, 6, 1, 4, 0, 0, 0, 1]));
      setTimeout(() => {
        resolve(false);
        s.destroy();
      }, 2000).unref();
    });
  });
  // The gateway records the violation when it refuses; wait for it without sleeping on a clock.
  let violation: string | undefined;
  for (let i = 0; i < 50 && violation === undefined; i++) {
    const records = await auditSince(from);
    violation = records.find((r) => r.violation)?.violation?.detail ?? undefined;
    if (violation === undefined) await new Promise((r) => setImmediate(r));
  }
  return { closedByGateway: closed, violation };
}

// ---- the matrix ----

describe('identity attack matrix: tokens refused at the agent API with the precise reason, and audited', () => {
  it('accepts the well-formed token the attacks are variations of', async () => {
    const answer = await put(await sign(goodClaims()));
    expect(answer.status).toBe(200);
  });

  it('1. alg none → TOKEN_INVALID ALG_NOT_ALLOWED', async () => {
    await expectRefused(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(goodClaims())}.`, 'TOKEN_INVALID', 'ALG_NOT_ALLOWED');
  });

  it('2. HS256 signed with the issuer’s public key as the secret → TOKEN_INVALID ALG_NOT_ALLOWED', async () => {
    const publicJwk = { ...issuerKey, d: undefined };
    const secret = new TextEncoder().encode(JSON.stringify(publicJwk));
    const token = await new SignJWT(goodClaims()).setProtectedHeader({ alg: 'HS256', kid: issuerKey.kid }).sign(secret);
    await expectRefused(token, 'TOKEN_INVALID', 'ALG_NOT_ALLOWED');
  });

  it('3. unknown kid (a rogue key claiming the trusted issuer) → TOKEN_INVALID UNKNOWN_KID', async () => {
    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const rogue = { ...(await exportJWK(privateKey)), kid: 'rogue-key' };
    await expectRefused(await sign(goodClaims(), { key: rogue }), 'TOKEN_INVALID', 'UNKNOWN_KID');
  });

  it('4. signature tampered → TOKEN_INVALID BAD_SIGNATURE', async () => {
    const token = await sign(goodClaims());
    const [h, p, s] = token.split('.');
    const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
    await expectRefused(`${h}.${p}.${flipped}`, 'TOKEN_INVALID', 'BAD_SIGNATURE');
  });

  it('5. claims tampered under a valid signature (scope widened) → TOKEN_INVALID BAD_SIGNATURE', async () => {
    const [h, , s] = (await sign(goodClaims({ scope: 'read' }))).split('.');
    await expectRefused(`${h}.${b64(goodClaims({ scope: 'read write admin' }))}.${s}`, 'TOKEN_INVALID', 'BAD_SIGNATURE');
  });

  it('6. wrong iss (an issuer the bundle does not trust) → TOKEN_INVALID UNKNOWN_ISSUER', async () => {
    await expectRefused(await sign(goodClaims({ iss: 'https://evil.example' })), 'TOKEN_INVALID', 'UNKNOWN_ISSUER');
  });

  it('7. wrong aud → TOKEN_INVALID AUD_MISMATCH', async () => {
    await expectRefused(await sign(goodClaims({ aud: 'https://some-api.example' })), 'TOKEN_INVALID', 'AUD_MISMATCH');
  });

  it('8. a token for another gateway of the plant → TOKEN_INVALID AUD_MISMATCH', async () => {
    await expectRefused(await sign(goodClaims({ aud: `${lab.audience}-other-gateway` })), 'TOKEN_INVALID', 'AUD_MISMATCH');
  });

  it('9. expired → TOKEN_EXPIRED EXPIRED', async () => {
    const iat = Math.floor(clock.now() / 1000) - 600;
    await expectRefused(await sign(goodClaims({ iat, exp: iat + 300 })), 'TOKEN_EXPIRED', 'EXPIRED');
  });

  it('10. nbf in the future → TOKEN_INVALID NOT_YET_VALID', async () => {
    await expectRefused(await sign(goodClaims({ nbf: Math.floor(clock.now() / 1000) + 120 })), 'TOKEN_INVALID', 'NOT_YET_VALID');
  });

  it('11. iat in the future → TOKEN_INVALID IAT_IN_FUTURE', async () => {
    const iat = Math.floor(clock.now() / 1000) + 120;
    await expectRefused(await sign(goodClaims({ iat, exp: iat + 300 })), 'TOKEN_INVALID', 'IAT_IN_FUTURE');
  });

  it('12. lifetime above the bundle’s maximum → TOKEN_INVALID LIFETIME_TOO_LONG', async () => {
    const iat = Math.floor(clock.now() / 1000);
    const max = lab.gateway.policy.engine?.maxTokenTtlSec ?? 900;
    await expectRefused(await sign(goodClaims({ iat, exp: iat + max + 1 })), 'TOKEN_INVALID', 'LIFETIME_TOO_LONG');
  });

  it.each(['owner', 'task', 'jti'])('13. missing %s → TOKEN_INVALID MISSING_CLAIM', async (claim) => {
    await expectRefused(await sign(goodClaims({ [claim]: undefined })), 'TOKEN_INVALID', 'MISSING_CLAIM');
  });

  it('14. sub ≠ the certificate’s SPIFFE ID → TOKEN_INVALID SUB_MISMATCH', async () => {
    await expectRefused(await sign(goodClaims({ cnf: { 'x5t#S256': reporterThumbprint } })), 'TOKEN_INVALID', 'SUB_MISMATCH', await lab.credentials('reporter'));
  });

  it('15. cnf thumbprint of another certificate → TOKEN_BINDING_MISMATCH THUMBPRINT_MISMATCH', async () => {
    await expectRefused(await sign(goodClaims({ cnf: { 'x5t#S256': reporterThumbprint } })), 'TOKEN_BINDING_MISMATCH', 'THUMBPRINT_MISMATCH');
  });

  it('16. no certificate binding on an mTLS session → TOKEN_BINDING_MISMATCH CNF_MISSING', async () => {
    await expectRefused(await sign(goodClaims({ cnf: undefined })), 'TOKEN_BINDING_MISMATCH', 'CNF_MISSING');
  });

  it('17. oversized token (bounded size) → TOKEN_INVALID TOO_LARGE', async () => {
    await expectRefused(await sign(goodClaims({ pad: 'x'.repeat(MAX_TOKEN_LENGTH) })), 'TOKEN_INVALID', 'TOO_LARGE');
  });

  it('17a. a body over the agent API\'s 16 KiB bound → HTTP 413 with a reason, not a connection reset', async () => {
    const answer = await put('x'.repeat(17 * 1024));
    expect(answer.status).toBe(413);
    expect(answer.body.reason).toBe('TOKEN_INVALID');
    // The connection that was refused is not needed: the next PUT on a new one works as always.
    await expectRefused(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(goodClaims())}.`, 'TOKEN_INVALID', 'ALG_NOT_ALLOWED');
  });

  it('17b. a header "crit" extension the gateway does not understand → TOKEN_INVALID CRIT_UNSUPPORTED', async () => {
    // Signed by hand: jose's signer itself refuses an extension it does not know.
    const input = `${b64({ alg: 'EdDSA', typ: 'JWT', kid: issuerKey.kid, crit: ['exp-critical'], 'exp-critical': true })}.${b64(goodClaims())}`;
    const signature = cryptoSign(null, Buffer.from(input), createPrivateKey({ key: issuerKey as import('node:crypto').JsonWebKey, format: 'jwk' })).toString('base64url');
    await expectRefused(`${input}.${signature}`, 'TOKEN_INVALID', 'CRIT_UNSUPPORTED');
  });
});

describe('identity attack matrix: certificates refused at the TLS handshake, and audited', () => {
  it('18. a client certificate from an untrusted CA is refused and audited as NO_IDENTITY', async () => {
    const other = await initPki(path.join(dir, 'rogue-pki'), { agents: [{ name: 'optimizer', spiffeId: OPTIMIZER }] });
    const [cert, key] = await Promise.all([readFile(other.agents.optimizer.cert), readFile(other.agents.optimizer.key)]);
    const r = await tlsAttempt({ ca: optimizerCreds.ca, cert, key });
    expect(r.closedByGateway).toBe(true);
    expect(r.violation).toMatch(/^NO_IDENTITY TLS_HANDSHAKE/);
  });

  it('19. an expired client certificate is refused and audited as NO_IDENTITY', async () => {
    const now = Date.now();
    const paths = await issueClientCertificate(lab.pki, { name: 'expired', uris: [OPTIMIZER], notBefore: new Date(now - 2 * 86_400_000), notAfter: new Date(now - 86_400_000) });
    const [cert, key] = await Promise.all([readFile(paths.cert), readFile(paths.key)]);
    const r = await tlsAttempt({ ca: optimizerCreds.ca, cert, key });
    expect(r.closedByGateway).toBe(true);
    expect(r.violation).toMatch(/^NO_IDENTITY TLS_HANDSHAKE/);
  });

  it('20. a certificate from our CA without a SPIFFE ID is refused and audited as NO_IDENTITY', async () => {
    const now = Date.now();
    const paths = await issueClientCertificate(lab.pki, { name: 'anonymous', uris: [], notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000) });
    const r = await tlsAttempt({ ca: optimizerCreds.ca, cert: await readFile(paths.cert), key: await readFile(paths.key) });
    expect(r.closedByGateway).toBe(true);
    expect(r.violation).toMatch(/^NO_IDENTITY NO_IDENTITY: client certificate has no subject alternative name/);
  });

  it('21. a certificate with two SPIFFE IDs (letting the issuer pick the identity) is refused as NO_IDENTITY', async () => {
    const now = Date.now();
    const paths = await issueClientCertificate(lab.pki, { name: 'two-ids', uris: [OPTIMIZER, DEMO_AGENTS.reporter], notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000) });
    const r = await tlsAttempt({ ca: optimizerCreds.ca, cert: await readFile(paths.cert), key: await readFile(paths.key) });
    expect(r.violation).toMatch(/2 URI SANs/);
  });
});

describe('identity attack matrix: revocation is effective on the very next command and audited', () => {
  let agent: ModbusAgent;

  beforeAll(async () => {
    agent = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, optimizerCreds);
  });
  afterAll(async () => {
    await agent?.close();
  });

  async function freshToken(over: Record<string, unknown> = {}): Promise<string> {
    // Revocations by sub/owner reach tokens issued up to the leeway after them: step past it, and
    // past the lifetime of every token an earlier case put, so their slots of the identity's bound
    // (max_tokens_per_identity) are free whatever order the cases run in.
    clock.advance(301_000);
    const token = await sign(goodClaims(over));
    const answer = await put(token);
    expect(answer.status).toBe(200);
    expect((await commandReason(agent)).reason).toBe('ALLOWED');
    return token;
  }

  it('22. revoked jti: the very next command on the open connection is denied TOKEN_REVOKED; re-PUT refused', async () => {
    const jti = `attack-jti-${++jtiCounter}`;
    const token = await freshToken({ jti });
    const op = await operatorToken('soc-operator', ['operator']);
    const answer = await revoke(op, { jti, reason: 'token leaked in a log' });
    // The first command after the operator's 201, on the connection opened before it: no cached decision survives.
    const denied = await commandReason(agent);
    expect(answer.status).toBe(201);
    expect(denied).toEqual({ exception: 0x01, reason: 'TOKEN_REVOKED' });
    await expectRefused(token, 'TOKEN_REVOKED', 'REVOKED');
  });

  it('23. revoked sub: every command of that workload is denied TOKEN_REVOKED until a newer token is issued', async () => {
    await freshToken();
    const op = await operatorToken('soc-operator', ['operator']);
    expect((await revoke(op, { sub: OPTIMIZER, reason: 'workload compromised' })).status).toBe(201);
    expect(await commandReason(agent)).toEqual({ exception: 0x01, reason: 'TOKEN_REVOKED' });
    await freshToken(); // issued after the revocation: works again (documented semantics)
  });

  it('24. revoked owner: the owner’s agents are denied TOKEN_REVOKED', async () => {
    await freshToken();
    const op = await operatorToken('soc-operator', ['operator']);
    expect((await revoke(op, { owner: OWNER, reason: 'owner left the company' })).status).toBe(201);
    expect(await commandReason(agent)).toEqual({ exception: 0x01, reason: 'TOKEN_REVOKED' });
  });

  it('25. an owner revokes their own agent without an operator (self-service); the next command is denied', async () => {
    await freshToken();
    const owner = await operatorToken(OWNER, ['owner']);
    expect((await revoke(owner, { sub: OPTIMIZER, reason: 'agent misbehaving' })).status).toBe(201);
    expect(await commandReason(agent)).toEqual({ exception: 0x01, reason: 'TOKEN_REVOKED' });
  });

  it('26. an owner cannot revoke another owner’s agents → 403 SCOPE_MISSING, audited', async () => {
    const from = lab.gateway.audit.nextSeq;
    const mallory = await operatorToken('mallory@plant.example', ['owner']);
    const answer = await revoke(mallory, { owner: OWNER, reason: 'denial of service' });
    expect(answer.status).toBe(403);
    expect(answer.body.reason).toBe('SCOPE_MISSING');
    expect((await auditSince(from)).some((r) => r.token?.reason === 'SCOPE_MISSING')).toBe(true);
  });

  it('27. an operator-API token without the operator or owner role → 403 SCOPE_MISSING; an agent token is not an operator token', async () => {
    expect((await revoke(await operatorToken('someone', ['viewer']), { owner: OWNER, reason: 'x' })).body.reason).toBe('SCOPE_MISSING');
    const agentToken = await sign(goodClaims());
    expect((await revoke(agentToken, { owner: OWNER, reason: 'x' })).body.reason).toBe('SCOPE_MISSING');
    expect((await request(operatorApi.port, 'POST', '/v1/revocations', { body: '{}' })).body.reason).toBe('NO_TOKEN');
  });

  it('28. task-complete on the agent API ends every token of that task at once; a new task works', async () => {
    await freshToken({ task: { id: 'batch-42', purpose: 'one batch' } });
    const from = lab.gateway.audit.nextSeq;
    const answer = await request(agentApi.port, 'POST', '/v1/task-complete', { creds: optimizerCreds });
    expect(answer.status).toBe(200);
    expect(answer.body.task).toBe('batch-42');
    expect(await commandReason(agent)).toEqual({ exception: 0x01, reason: 'TOKEN_REVOKED' });
    expect((await auditSince(from)).some((r) => r.token?.detail?.startsWith('task=batch-42'))).toBe(true);
    await freshToken({ task: { id: 'batch-43', purpose: 'next batch' } });
  });

  it('29. revocations survive a restart: a second store opened on the same file knows them all', async () => {
    // One of each kind of its own (for a workload and an owner no other case uses), whatever ran before.
    const ghost = 'spiffe://plant.example/agent/ghost';
    for (const r of [
      { kind: 'jti', value: `restart-jti-${++jtiCounter}` },
      { kind: 'sub', value: ghost },
      { kind: 'owner', value: 'ghost-owner@plant.example' },
      { kind: 'task', value: 'ghost-task', workloadId: ghost },
    ] as const) {
      await revocations.revoke({ ...r, reason: 'restart test', source: 'operator', by: 'soc-operator' });
    }
    const again = await RevocationStore.open({ stateDir: path.join(dir, 'identity-test'), clock });
    try {
      expect(again.list()).toEqual(revocations.list());
      expect(again.list().map((r) => r.kind)).toEqual(expect.arrayContaining(['jti', 'sub', 'owner', 'task']));
    } finally {
      await again.close();
    }
  });

  it('30. an agent spraying fresh tokens is refused past the per-identity bound → RATE_LIMITED TOO_MANY_TOKENS, audited', async () => {
    clock.advance(301_000); // every earlier token has expired: their slots are free
    for (let i = 0; i < DEFAULT_MAX_TOKENS_PER_IDENTITY; i++) expect((await put(await sign(goodClaims()))).status).toBe(200);
    await expectRefused(await sign(goodClaims()), 'RATE_LIMITED', 'TOO_MANY_TOKENS');
    clock.advance(301_000);
  });

  it('31. a token from an issuer key the reloaded bundle removed stops working at once (TOKEN_INVALID)', async () => {
    await freshToken();
    const token = await sign(goodClaims());
    // Revision 2 trusts a new key for the same issuer; the old key is gone.
    const { publicKey } = await generateKeyPair('EdDSA', { extractable: true });
    const newPublic = { ...(await exportJWK(publicKey)), kid: 'rotated-in', alg: 'EdDSA', use: 'sig' };
    const payload = await compileSources(path.join(PACKAGE_ROOT, 'rules/demo/bundle.yaml'), { now: clock.now(), revision: 2 });
    payload.issuers = payload.issuers.map((i) => (i.iss === DEV_ISSUER ? { iss: i.iss, jwks: { keys: [newPublic] } } : i));
    const policyKey = JSON.parse(await readFile(path.join(dir, 'keys', 'policy.private.jwk.json'), 'utf8')) as JWK;
    await writeBundleFile(lab.bundleFile, await signBundle(payload, policyKey, policyKey.kid as string));
    expect(await lab.gateway.reloadBundle()).toBe(true);
    // WIRING: the gateway's reloadBundle will do this after a successful activation.
    lab.gateway.tokens.retainTrusted(lab.gateway.policy.issuers as NonNullable<typeof lab.gateway.policy.issuers>);
    try {
      expect(await commandReason(agent)).toEqual({ exception: 0x01, reason: 'TOKEN_INVALID' });
      await expectRefused(token, 'TOKEN_INVALID', 'UNKNOWN_KID');
    } finally {
      // The demo issuer's key back (a newer revision), so the cases after this one (in any order) run as before it.
      const restored = await compileSources(path.join(PACKAGE_ROOT, 'rules/demo/bundle.yaml'), { now: clock.now(), revision: 3 });
      await writeBundleFile(lab.bundleFile, await signBundle(restored, policyKey, policyKey.kid as string));
      expect(await lab.gateway.reloadBundle()).toBe(true);
    }
  });
});
