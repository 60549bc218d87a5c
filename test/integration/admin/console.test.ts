// The web console's security as a browser and an attacker see it, over real HTTPS to the real
// gateway's operator API: sign-in with an operator token or an operator's client certificate, the
// session cookie's attributes, CSRF and origin checks on every state-changing request, a strict
// Content-Security-Policy with no inline script, sessions ended by revocation, and the live
// decision stream. (The browser flows themselves are in test/e2e/console-browser.test.ts.)
import https from 'node:https';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectModbusAgent, putToken } from '../../../src/cli/demo/agent.js';
import { PACKAGE_ROOT, startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { signBundle, writeBundleFile } from '../../../src/policy/bundle.js';
import { compileSources } from '../../../src/policy/sources.js';
import type { JWK } from 'jose';
import { issueClientCertificate } from '../../../src/identity/dev/pki.js';
import { modbusError } from '../safety/gateway-harness.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

const OPERATOR_SPIFFE = 'spiffe://plant.example/operator/bob';

describe('web console on the operator API', () => {
  let dir: string;
  let lab: Lab;
  let ca: Buffer;
  let base: string;

  const request = (method: string, p: string, o: { cookie?: string; form?: Record<string, string>; origin?: string | null; cert?: { cert: Buffer; key: Buffer }; stream?: boolean } = {}): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const body = o.form === undefined ? undefined : new URLSearchParams(o.form).toString();
      const req = https.request(
        `${base}${p}`,
        {
          method,
          ca,
          ...(o.cert ?? {}),
          agent: false,
          headers: {
            ...(o.cookie ? { cookie: o.cookie } : {}),
            ...(body !== undefined ? { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } : {}),
            // What a browser sends with a form post from our own page, unless the test says otherwise.
            ...(method === 'POST' && o.origin !== null ? { origin: o.origin ?? base } : {}),
          },
        },
        (res) => {
          if (o.stream) {
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
            res.destroy();
            return;
          }
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const cookieOf = (a: Answer, name: string): string | undefined => {
    const set = ([] as string[]).concat(a.headers['set-cookie'] ?? []);
    return set.find((c) => c.startsWith(`${name}=`));
  };
  /** Opens the sign-in form: its CSRF value and the matching cookie. */
  const loginForm = async (): Promise<{ csrf: string; cookie: string }> => {
    const a = await request('GET', '/console/login');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(a.body)![1]!;
    return { csrf, cookie: cookieOf(a, '__Host-pg_login')!.split(';')[0]! };
  };
  const signIn = async (token?: string): Promise<{ cookie: string; csrf: string }> => {
    const f = await loginForm();
    const a = await request('POST', '/console/login', { cookie: f.cookie, form: { _csrf: f.csrf, token: token ?? (await lab.operatorToken()) } });
    expect(a.status, a.body).toBe(303);
    const cookie = cookieOf(a, '__Host-pg_session')!.split(';')[0]!;
    const page = await request('GET', '/console/freezes', { cookie });
    return { cookie, csrf: /name="_csrf" value="([^"]+)"/.exec(page.body)![1]! };
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-console-'));
    lab = await startLab({
      stateDir: dir,
      patchConfig: (y) => `${y}console:\n  certificate_operators:\n    - { spiffe_id: "${OPERATOR_SPIFFE}", name: bob@plant.example, roles: [operator] }\n`,
    });
    ca = await readFile(lab.pki.ca.cert);
    const o = lab.gateway.operatorApi!;
    base = `https://localhost:${o.port}`;
  }, 60_000);

  afterAll(async () => {
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('sends a page request without a session to the sign-in form, which carries a strict CSP and no inline script or style', async () => {
    const a = await request('GET', '/console/decisions');
    expect(a.status).toBe(303);
    expect(a.headers.location).toBe('/console/login');
    const login = await request('GET', '/console/login');
    expect(login.status).toBe(200);
    const csp = String(login.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).toContain("frame-ancestors 'none'");
    expect(login.headers['x-content-type-options']).toBe('nosniff');
    expect(login.body).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
    expect(login.body).not.toMatch(/\sstyle=|\son[a-z]+=/i);
    expect(login.body).not.toMatch(/https?:\/\/(?!localhost)/);
    // The referenced script and stylesheet come from this server, content-hashed.
    const js = /<script src="([^"]+)"/.exec(login.body)![1]!;
    const served = await request('GET', js);
    expect(served.status).toBe(200);
    expect(served.headers['content-type']).toContain('text/javascript');
    expect(cookieOf(login, '__Host-pg_login')).toMatch(/; Path=\/; Secure; HttpOnly; SameSite=Strict/);
  });

  it('signs in with an operator token into a session cookie that is HttpOnly, Secure and SameSite=Strict; the token itself is never set as a cookie', async () => {
    const token = await lab.operatorToken();
    const f = await loginForm();
    const a = await request('POST', '/console/login', { cookie: f.cookie, form: { _csrf: f.csrf, token } });
    expect(a.status).toBe(303);
    expect(a.headers.location).toBe('/console/decisions');
    const session = cookieOf(a, '__Host-pg_session')!;
    expect(session).toMatch(/^__Host-pg_session=[A-Za-z0-9_-]{43}; Path=\/; Secure; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    expect(JSON.stringify(a.headers)).not.toContain(token);
    const page = await request('GET', '/console/decisions', { cookie: session.split(';')[0] });
    expect(page.status).toBe(200);
    expect(page.body).toContain('bob@plant.example');
    for (const p of ['approvals', 'freezes', 'agents', 'bundle', 'audit', 'plcs']) {
      const r = await request('GET', `/console/${p}`, { cookie: session.split(';')[0] });
      expect(r.status, p).toBe(200);
      expect(r.body).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
    }
  });

  it('refuses a sign-in whose form did not come from this console (CSRF), a token that is not an operator token (401, reason shown), and an owner-role token (403)', async () => {
    const f = await loginForm();
    let a = await request('POST', '/console/login', { cookie: f.cookie, form: { _csrf: 'forged', token: await lab.operatorToken() } });
    expect(a.status).toBe(403);
    expect(cookieOf(a, '__Host-pg_session')).toBeUndefined();
    a = await request('POST', '/console/login', { cookie: f.cookie, form: { _csrf: f.csrf, token: await lab.operatorToken() }, origin: 'https://evil.example' });
    expect(a.status).toBe(403);
    a = await request('POST', '/console/login', { cookie: f.cookie, form: { _csrf: f.csrf, token: await lab.token('optimizer') } });
    expect(a.status).toBe(401);
    expect(a.body).toContain('SCOPE_MISSING');
    expect(cookieOf(a, '__Host-pg_session')).toBeUndefined();
    // An owner-role token is a valid operator API credential (self-service), but not for the console's plant-wide view.
    a = await request('POST', '/console/login', { cookie: f.cookie, form: { _csrf: f.csrf, token: await lab.operatorToken({ sub: 'alice@plant.example', roles: ['owner'] }) } });
    expect(a.status).toBe(403);
    expect(a.body).toContain('needs the &quot;operator&quot; role');
    expect(cookieOf(a, '__Host-pg_session')).toBeUndefined();
  });

  it('refuses a state-changing request without the session CSRF token or from another origin, and changes nothing', async () => {
    const s = await signIn();
    let a = await request('POST', '/console/freezes', { cookie: s.cookie, form: { scope: 'site', reason: 'forged' } });
    expect(a.status).toBe(403);
    a = await request('POST', '/console/freezes', { cookie: s.cookie, form: { _csrf: s.csrf, scope: 'site', reason: 'forged' }, origin: 'https://evil.example' });
    expect(a.status).toBe(403);
    a = await request('POST', '/console/freezes', { cookie: s.cookie, form: { _csrf: s.csrf, scope: 'site', reason: 'forged' }, origin: null });
    expect(a.status).toBe(403);
    expect(lab.gateway.freezes.active(Date.now())).toEqual([]);
  });

  it('freezes from a form post with the CSRF token: the next write is refused and every page shows the freeze', async () => {
    const s = await signIn();
    const api = lab.gateway.agentApi;
    const creds = await lab.credentials('optimizer');
    expect((await putToken(api.host, api.port, creds, await lab.token('optimizer'))).status).toBe(200);
    const agent = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
    try {
      const a = await request('POST', '/console/freezes', { cookie: s.cookie, form: { _csrf: s.csrf, scope: 'asset', value: 'plc1', mode: 'writes', reason: 'console test', expires_in_sec: '' } });
      expect(a.status).toBe(303);
      expect(await modbusError(agent.client.writeRegister(0, 600))).toBe(0x01);
      const page = await request('GET', '/console/agents', { cookie: s.cookie });
      expect(page.body).toContain('EMERGENCY FREEZE in force');
      const [f] = lab.gateway.freezes.active(Date.now());
      expect(f).toMatchObject({ scope: 'asset', value: 'plc1', by: 'bob@plant.example', reason: 'console test' });
      const lifted = await request('POST', `/console/freezes/${f!.id}/unfreeze`, { cookie: s.cookie, form: { _csrf: s.csrf, reason: 'done' } });
      expect(lifted.status).toBe(303);
      await agent.client.writeRegister(0, 600);
    } finally {
      await agent.close();
    }
  });

  it('streams decisions as server-sent events, filtered', async () => {
    const s = await signIn();
    const api = lab.gateway.agentApi;
    const creds = await lab.credentials('optimizer');
    expect((await putToken(api.host, api.port, creds, await lab.token('optimizer'))).status).toBe(200);
    const events: string[] = [];
    const got = new Promise<string>((resolve, reject) => {
      const req = https.request(`${base}/console/events/decisions?effect=deny&reason=VALUE_OUT_OF_BOUNDS`, { ca, agent: false, headers: { cookie: s.cookie } }, (res) => {
        expect(res.headers['content-type']).toContain('text/event-stream');
        res.on('data', (c: Buffer) => {
          events.push(c.toString());
          const all = events.join('');
          if (all.includes('event: decision')) {
            res.destroy();
            resolve(all);
          }
        });
        // The stream is open once its first comment arrives: now make the agent act.
        res.once('data', () => {
          void (async () => {
            const agent = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
            await agent.client.readInputRegisters(0, 1);
            await modbusError(agent.client.writeRegister(0, 950));
            await agent.close();
          })().catch(reject);
        });
      });
      req.on('error', reject);
      req.end();
    });
    const text = await got;
    const data = JSON.parse(/data: (.*)\n/.exec(text)![1]!) as { reason: string; workload: string; effect: string };
    expect(data).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS', effect: 'deny', workload: 'spiffe://plant.example/agent/optimizer' });
    expect(text).not.toContain('"ALLOWED"');
  });

  it("signs in with an operator's client certificate named in the configuration; another client certificate is refused", async () => {
    const bob = await issueClientCertificate(lab.pki, { name: 'operator-bob', uris: [OPERATOR_SPIFFE], notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3_600_000) });
    const cert = { cert: await readFile(bob.cert), key: await readFile(bob.key) };
    const f = await loginForm();
    const a = await request('POST', '/console/login/certificate', { cookie: f.cookie, form: { _csrf: f.csrf }, cert });
    expect(a.status).toBe(303);
    const cookie = cookieOf(a, '__Host-pg_session')!.split(';')[0]!;
    expect((await request('GET', '/console/approvals', { cookie })).body).toContain('certificate');
    const agentCreds = await lab.credentials('optimizer');
    const refused = await request('POST', '/console/login/certificate', { cookie: f.cookie, form: { _csrf: f.csrf }, cert: { cert: agentCreds.cert, key: agentCreds.key } });
    expect(refused.status).toBe(403);
    expect(cookieOf(refused, '__Host-pg_session')).toBeUndefined();
  });

  it('shows what the active bundle changed against the one before it', async () => {
    const s = await signIn();
    const key = JSON.parse(await readFile(path.join(dir, 'keys/policy.private.jwk.json'), 'utf8')) as JWK & { kid: string };
    const payload = await compileSources(path.join(PACKAGE_ROOT, 'rules/demo/bundle.yaml'), { now: Date.now(), revision: 2 });
    await writeBundleFile(lab.bundleFile, await signBundle(payload, key, key.kid));
    expect(await lab.gateway.reloadBundle('console test')).toBe(true);
    const page = await request('GET', '/console/bundle', { cookie: s.cookie });
    expect(page.body).toContain('Revision 1 → 2');
    expect(page.body).toMatch(/<code>~ header [^<]*revision/);
  });

  it('ends a session at once when its operator is revoked', async () => {
    const s = await signIn(await lab.operatorToken({ sub: 'dave@plant.example' }));
    expect((await request('GET', '/console/audit', { cookie: s.cookie })).status).toBe(200);
    await lab.gateway.revocations.revoke({ kind: 'owner', value: 'dave@plant.example', reason: 'left the company', source: 'operator', by: 'bob@plant.example' });
    const a = await request('GET', '/console/audit', { cookie: s.cookie });
    expect(a.status).toBe(303);
    expect(a.headers.location).toBe('/console/login');
  });
});
