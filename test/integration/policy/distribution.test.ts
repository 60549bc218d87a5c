// The bundle lifecycle with real files, a real file watch and a real HTTPS distribution point on
// 127.0.0.1: key rotation (rotate-in, retire), revocations applied on activation, verified-before-
// written fetching with ETag, bounded downloads and backoff, and an unreachable server that leaves
// the active bundle alone.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { ManualClock } from '../../../src/core/clock.js';
import type { Subject } from '../../../src/core/command.js';
import { silentLogger } from '../../../src/core/log.js';
import { PolicyState, readPinnedKeys } from '../../../src/gateway/policy-state.js';
import { initPki, type PkiPaths } from '../../../src/identity/dev/pki.js';
import { RevocationStore } from '../../../src/identity/revocation.js';
import { readBundleFile, signBundle, writeBundleFile } from '../../../src/policy/bundle.js';
import { FileBundleSource, UrlBundleSource, type BundleSourceHooks } from '../../../src/policy/source.js';
import type { BundlePayload } from '../../../src/policy/payload.js';
import { demoPayload } from '../../unit/policy/fixtures.js';
import { RESOLVERS } from '../../../protocols/resolvers.js';

async function keyPair(): Promise<{ priv: JWK; pub: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true });
  return { priv: await exportJWK(privateKey), pub: await exportJWK(publicKey) };
}

const oldKey = await keyPair();
const newKey = await keyPair();
const rogueKey = await keyPair();

const sign = (revision: number, key: JWK, kid: string, over: Partial<BundlePayload> = {}) => signBundle(demoPayload({ revision, ...over }), key, kid);

interface Rig {
  dir: string;
  bundleFile: string;
  policy: PolicyState;
  refused: { code: string; trigger: string }[];
  hooks: BundleSourceHooks;
  jwks: { old: string; new: string };
}

async function rig(opts: { retired?: string[] } = {}): Promise<Rig> {
  const dir = await mkdtemp(path.join(tmpdir(), 'plantgate-distribution-'));
  const jwks = { old: path.join(dir, 'policy-2025.jwks.json'), new: path.join(dir, 'policy-2026.jwks.json') };
  await writeFile(jwks.old, JSON.stringify({ keys: [{ ...oldKey.pub, kid: 'policy-2025' }] }));
  await writeFile(jwks.new, JSON.stringify({ keys: [{ ...newKey.pub, kid: 'policy-2026' }] }));
  const policy = new PolicyState({
    stateDir: path.join(dir, 'state', 'policy'),
    pinned: await readPinnedKeys([jwks.old, jwks.new], opts.retired ?? []),
    clock: new ManualClock(),
    logger: silentLogger,
    readsWhenExpired: true,
    resolvers: RESOLVERS,
  });
  await policy.init();
  const bundleFile = path.join(dir, 'bundle.jws');
  const refused: Rig['refused'] = [];
  // What the gateway lends a source (gateway.ts), minus the audit: load = the serialised reload.
  let loading: Promise<unknown> = Promise.resolve();
  const hooks: BundleSourceHooks = {
    bundleFile: () => bundleFile,
    check: (jws) => policy.check(jws),
    activate: (trigger) => {
      const next = loading.then(async () => {
        const r = await policy.load(bundleFile);
        if (!r.ok) refused.push({ code: r.code, trigger });
        return r.ok;
      });
      loading = next.catch(() => undefined);
      return next;
    },
    onRefused: (code, _message, trigger) => refused.push({ code, trigger }),
    logger: silentLogger,
  };
  return { dir, bundleFile, policy, refused, hooks, jwks };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('key rotation at the gateway', () => {
  it('rotates in a new key: bundles from both pinned keys load, in revision order', async () => {
    const r = await rig();
    await writeBundleFile(r.bundleFile, await sign(5, oldKey.priv, 'policy-2025'));
    expect(await r.policy.load(r.bundleFile)).toMatchObject({ ok: true, revision: 5 });
    await writeBundleFile(r.bundleFile, await sign(6, newKey.priv, 'policy-2026'));
    expect(await r.policy.load(r.bundleFile)).toMatchObject({ ok: true, revision: 6 });
    expect(r.policy.activeKid).toBe('policy-2026');
  });

  it('refuses a bundle signed by a retired key with RETIRED_KEY and keeps the active bundle', async () => {
    const r = await rig({ retired: ['policy-2025'] });
    await writeBundleFile(r.bundleFile, await sign(6, newKey.priv, 'policy-2026'));
    expect(await r.policy.load(r.bundleFile)).toMatchObject({ ok: true, revision: 6 });
    await writeBundleFile(r.bundleFile, await sign(7, oldKey.priv, 'policy-2025'));
    const refused = await r.policy.load(r.bundleFile);
    expect(refused).toMatchObject({ ok: false, code: 'RETIRED_KEY' });
    expect(r.policy.engine?.revision).toBe(6);
  });

  it('drops the active bundle into safe mode when its own key is retired and no newer bundle verifies', async () => {
    const r = await rig();
    await writeBundleFile(r.bundleFile, await sign(5, oldKey.priv, 'policy-2025'));
    expect((await r.policy.load(r.bundleFile)).ok).toBe(true);
    r.policy.setPinnedKeys(await readPinnedKeys([r.jwks.old, r.jwks.new], ['policy-2025']));
    const reload = await r.policy.load(r.bundleFile);
    expect(reload).toMatchObject({ ok: false, code: 'RETIRED_KEY' });
    // Neither the configured file nor the last-known-good copy (same key) may stay active.
    expect(r.policy.engine).toBeUndefined();
    // The publisher re-signs with the current key: the gateway leaves safe mode.
    await writeBundleFile(r.bundleFile, await sign(6, newKey.priv, 'policy-2026'));
    expect(await r.policy.load(r.bundleFile)).toMatchObject({ ok: true, revision: 6, source: 'configured' });
  });

  it("applies the bundle's revocations as it becomes active, and lifts them with the next bundle", async () => {
    const r = await rig();
    const store = await RevocationStore.open({ stateDir: path.join(r.dir, 'state', 'identity'), clock: new ManualClock() });
    cleanups.push(() => store.close());
    r.policy.onActivate = (p) => store.setBundleRevocations(p.revocations ?? [], p.issued_at);
    const subject = { workloadId: 'spiffe://plant.example/agent/optimizer', owner: 'ops@plant.example', taskId: 't', jti: 'tok-leaked-1', issuedAtMs: 0 } as Subject;
    expect(store.isRevoked(subject)).toBeUndefined();
    await writeBundleFile(r.bundleFile, await sign(5, newKey.priv, 'policy-2026', { revocations: [{ jti: 'tok-leaked-1', reason: 'pasted into a ticket' }] }));
    expect((await r.policy.load(r.bundleFile)).ok).toBe(true);
    expect(store.isRevoked(subject)).toBe('TOKEN_REVOKED');
    expect(store.list()).toEqual([expect.objectContaining({ kind: 'jti', value: 'tok-leaked-1', reason: 'pasted into a ticket', source: 'bundle' })]);
    await writeBundleFile(r.bundleFile, await sign(6, newKey.priv, 'policy-2026'));
    expect((await r.policy.load(r.bundleFile)).ok).toBe(true);
    expect(store.isRevoked(subject)).toBeUndefined();
  });
});

/** A distribution point: serves `body` with a strong ETag and answers If-None-Match with 304. */
interface Dist {
  url: string;
  server: Server;
  body: string;
  seenEtags: (string | undefined)[];
  hang: boolean;
}

let pki: PkiPaths;
beforeAll(async () => {
  pki = await initPki(await mkdtemp(path.join(tmpdir(), 'plantgate-dist-pki-')), { agents: [] });
});

async function distribution(): Promise<Dist> {
  const [cert, key] = await Promise.all([readFile(pki.gateway.cert), readFile(pki.gateway.key)]);
  const d = { body: '', seenEtags: [], hang: false } as unknown as Dist;
  d.server = createServer({ cert, key }, (req, res) => {
    d.seenEtags.push(req.headers['if-none-match']);
    if (d.hang) return; // never answers: the client's timeout must end it
    const etag = `"${createHash('sha256').update(d.body).digest('hex').slice(0, 16)}"`;
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304).end();
      return;
    }
    res.writeHead(200, { etag, 'content-type': 'application/jose' }).end(d.body);
  });
  d.server.listen(0, '127.0.0.1');
  await once(d.server, 'listening');
  d.url = `https://127.0.0.1:${(d.server.address() as AddressInfo).port}/bundles/site-a.jws?token=secret`;
  cleanups.push(() => {
    d.server.closeAllConnections();
    return new Promise<void>((res) => d.server.close(() => res()));
  });
  return d;
}

async function urlSource(r: Rig, d: Dist, over: { maxBytes?: number; timeoutMs?: number } = {}): Promise<UrlBundleSource> {
  const src = new UrlBundleSource(
    { url: d.url, ca: await readFile(pki.ca.cert), pollMs: 1000, timeoutMs: over.timeoutMs ?? 2000, maxBytes: over.maxBytes ?? 1024 * 1024, maxBackoffMs: 5000 },
    r.hooks,
  );
  cleanups.push(() => src.close());
  return src;
}

describe('fetching bundles from an HTTPS distribution point', () => {
  it('verifies a new bundle before writing it as the bundle file, then polls with If-None-Match and gets 304', async () => {
    const r = await rig();
    const d = await distribution();
    d.body = await sign(6, newKey.priv, 'policy-2026');
    const src = await urlSource(r, d);
    expect(await src.pollOnce()).toBe('activated');
    expect(r.policy.engine?.revision).toBe(6);
    expect(await readBundleFile(r.bundleFile)).toBe(d.body);
    expect(await src.pollOnce()).toBe('not-modified');
    expect(d.seenEtags[0]).toBeUndefined();
    expect(d.seenEtags[1]).toMatch(/^"[0-9a-f]{16}"$/);
    d.body = await sign(7, newKey.priv, 'policy-2026');
    expect(await src.pollOnce()).toBe('activated');
    expect(r.policy.engine?.revision).toBe(7);
  });

  it('never writes a fetched bundle that does not verify: the active bundle and the file stay', async () => {
    const r = await rig({ retired: ['policy-2025'] });
    const d = await distribution();
    d.body = await sign(6, newKey.priv, 'policy-2026');
    const src = await urlSource(r, d);
    expect(await src.pollOnce()).toBe('activated');
    const good = await readBundleFile(r.bundleFile);
    for (const [body, code] of [
      [await sign(7, rogueKey.priv, 'policy-2027'), 'UNKNOWN_KEY'],
      [await sign(8, oldKey.priv, 'policy-2025'), 'RETIRED_KEY'],
      [await sign(5, newKey.priv, 'policy-2026'), 'ROLLBACK'],
      ['<html>maintenance</html>', 'MALFORMED'],
    ] as const) {
      d.body = body;
      expect(await src.pollOnce()).toBe('refused');
      expect(r.refused.at(-1)).toEqual({ code, trigger: `fetch ${d.url.split('?')[0]}` });
      expect(await readBundleFile(r.bundleFile)).toBe(good);
      expect(r.policy.engine?.revision).toBe(6);
    }
    // A refused bundle is reported once, not on every poll.
    expect(await src.pollOnce()).toBe('not-modified');
  });

  it('keeps the active bundle when the server is unreachable, backs off exponentially, and recovers', async () => {
    const r = await rig();
    const d = await distribution();
    d.body = await sign(6, newKey.priv, 'policy-2026');
    const src = await urlSource(r, d, { maxBytes: 4096, timeoutMs: 300 });
    expect(await src.pollOnce()).toBe('activated');
    expect(src.nextDelayMs).toBe(1000);

    d.body = 'x'.repeat(5000); // larger than max_bytes: refused before it is read to the end
    expect(await src.pollOnce()).toBe('unreachable');
    expect([src.consecutiveFailures, src.nextDelayMs]).toEqual([1, 2000]);

    d.hang = true; // timeout
    expect(await src.pollOnce()).toBe('unreachable');
    expect([src.consecutiveFailures, src.nextDelayMs]).toEqual([2, 4000]);

    d.server.closeAllConnections();
    await new Promise<void>((res) => d.server.close(() => res())); // connection refused
    expect(await src.pollOnce()).toBe('unreachable');
    expect([src.consecutiveFailures, src.nextDelayMs]).toEqual([3, 5000]); // capped at max_backoff_ms
    expect(r.policy.engine?.revision).toBe(6);

    d.hang = false;
    d.body = await sign(7, newKey.priv, 'policy-2026');
    d.server.listen(Number(new URL(d.url).port), '127.0.0.1');
    await once(d.server, 'listening');
    expect(await src.pollOnce()).toBe('activated');
    expect([src.consecutiveFailures, src.nextDelayMs, r.policy.engine?.revision]).toEqual([0, 1000, 7]);
  });

  it('refuses a server whose certificate does not chain to the configured CA', async () => {
    const r = await rig();
    const d = await distribution();
    d.body = await sign(6, newKey.priv, 'policy-2026');
    const otherPki = await initPki(await mkdtemp(path.join(tmpdir(), 'plantgate-dist-other-')), { agents: [] });
    const src = new UrlBundleSource(
      { url: d.url, ca: await readFile(otherPki.ca.cert), pollMs: 1000, timeoutMs: 2000, maxBytes: 1 << 20, maxBackoffMs: 5000 },
      r.hooks,
    );
    expect(await src.pollOnce()).toBe('unreachable');
    expect(r.policy.engine).toBeUndefined();
  });

  it('polls on its own once started, first at once', async () => {
    const r = await rig();
    const d = await distribution();
    d.body = await sign(6, newKey.priv, 'policy-2026');
    const src = await urlSource(r, d);
    const polled = once(src, 'polled');
    src.start();
    expect(await polled).toEqual(['activated']);
    await src.close();
  });
});

describe('a watched bundle file', () => {
  it('activates a bundle dropped into the watched path by atomic rename, and refuses a bad one without touching the bundle file', async () => {
    const r = await rig();
    const drop = path.join(r.dir, 'incoming', 'bundle.jws');
    await mkdir(path.dirname(drop), { recursive: true });
    const src = new FileBundleSource({ file: drop, debounceMs: 20 }, r.hooks).start();
    cleanups.push(() => src.close());

    let handled = once(src, 'handled');
    await writeBundleFile(drop, await sign(6, newKey.priv, 'policy-2026'));
    expect(await handled).toEqual(['activated']);
    expect(r.policy.engine?.revision).toBe(6);
    const good = await readBundleFile(r.bundleFile);

    handled = once(src, 'handled');
    await writeBundleFile(drop, await sign(7, rogueKey.priv, 'policy-2027'));
    expect(await handled).toEqual(['refused']);
    expect(r.refused.at(-1)?.code).toBe('UNKNOWN_KEY');
    expect(await readBundleFile(r.bundleFile)).toBe(good);
    expect(r.policy.engine?.revision).toBe(6);
  });

  it('reloads the bundle file itself when that is the watched path (atomic replace keeps the watch alive)', async () => {
    const r = await rig();
    await writeBundleFile(r.bundleFile, await sign(5, newKey.priv, 'policy-2026'));
    expect((await r.policy.load(r.bundleFile)).ok).toBe(true);
    const src = new FileBundleSource({ file: r.bundleFile, debounceMs: 20 }, r.hooks).start();
    cleanups.push(() => src.close());
    for (const revision of [6, 7]) {
      const handled = once(src, 'handled');
      await writeBundleFile(r.bundleFile, await sign(revision, newKey.priv, 'policy-2026'));
      expect(await handled).toEqual(['activated']);
      expect(r.policy.engine?.revision).toBe(revision);
    }
  });
});
