// `make bench`: what identity costs per command. The cached path is what every Modbus command
// pays (registry lookup, expiry, revocation check); a cold verification is what the agent API pays
// when a token is presented (signature, claims, binding).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { JWK } from 'jose';
import { systemClock } from '../../src/core/clock.js';
import { mintToken } from '../../src/identity/dev/mint.js';
import { trustedIssuersFromJwks } from '../../src/identity/issuers.js';
import { TokenRegistry } from '../../src/identity/registry.js';
import { RevocationStore } from '../../src/identity/revocation.js';
import { verifyAccessToken } from '../../src/identity/verify.js';
import { PACKAGE_ROOT } from '../../src/cli/demo/lab.js';

const quick = process.argv.includes('--quick');
const ISS = 'https://issuer.dev.plantgate.local';
const SUB = 'spiffe://plant.example/agent/optimizer';
const THUMB = 'bench-thumbprint';

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-bench-token-'));
  try {
    const key = JSON.parse(await readFile(path.join(PACKAGE_ROOT, 'fixtures/keys/dev-issuer.private.jwk.json'), 'utf8')) as JWK;
    const jwks = JSON.parse(await readFile(path.join(PACKAGE_ROOT, 'fixtures/keys/dev-issuer.jwks.json'), 'utf8'));
    const issuers = trustedIssuersFromJwks([{ iss: ISS, jwks }]);
    const ctx = { issuers, audience: 'plantgate:demo', expectedSub: SUB, certThumbprint: THUMB, assurance: 'mtls+token' as const, maxTtlSec: 900, clock: systemClock };
    const mint = () => mintToken({ privateJwk: key, iss: ISS, sub: SUB, aud: 'plantgate:demo', owner: 'alice@plant.example', task: { id: 't1', purpose: 'bench' }, scope: ['read'], ttlSec: 600, certThumbprint: THUMB });

    const revocations = await RevocationStore.open({ stateDir: dir, clock: systemClock });
    // One unrelated revocation, so the per-command check has a non-empty store to consult.
    await revocations.revoke({ kind: 'owner', value: 'mallory@plant.example', reason: 'bench', source: 'operator', by: 'bench' });
    const registry = new TokenRegistry({ clock: systemClock, revocations });
    registry.put(SUB, await verifyAccessToken(await mint(), ctx));

    const lookups = quick ? 1_000_000 : 5_000_000;
    let ok = 0;
    for (let i = 0; i < 100_000; i++) if (typeof registry.current(SUB) !== 'string') ok++; // warm-up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < lookups; i++) if (typeof registry.current(SUB) !== 'string') ok++;
    const cachedNs = Number(process.hrtime.bigint() - t0) / lookups;

    const n = quick ? 300 : 2000;
    const tokens = await Promise.all(Array.from({ length: n }, mint));
    const t1 = process.hrtime.bigint();
    for (const t of tokens) await verifyAccessToken(t, ctx);
    const coldUs = Number(process.hrtime.bigint() - t1) / n / 1000;

    console.log(`token bench${quick ? ' (quick)' : ''}, Node ${process.version}`);
    console.log(`cached path per command (registry lookup + expiry + revocation check): ${cachedNs.toFixed(0)} ns  (${lookups} lookups, ${ok > 0 ? 'valid' : 'INVALID'})`);
    console.log(`cold verification (EdDSA signature, claims, cnf binding): ${coldUs.toFixed(0)} µs each, ${Math.round(1e6 / coldUs)} verifications/s (${n} tokens)`);
    await revocations.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
