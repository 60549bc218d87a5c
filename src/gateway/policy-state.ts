// Holds the active policy: the verified bundle compiled into an engine, and the token issuers it
// trusts. Loading verifies the signature against the pinned keys, refuses rollbacks (the highest
// revision ever accepted is kept in the state directory), and keeps the last-known-good bundle on
// disk so the gateway boots from it when the configured file is missing or bad. Swapping the
// active engine is one assignment: a command sees either the old bundle or the new one.
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleResolver, type CommandResolver, type ResolverFactories } from '../assets/resolver.js';
import type { Clock } from '../core/clock.js';
import { PlantgateError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { trustedIssuersFromJwks, type TrustedIssuers } from '../identity/issuers.js';
import { decodeBundleUnverified, mergeTrustedKeys, readBundleFile, readTrustedKeys, verifyBundle, writeBundleFile, type TrustedKey } from '../policy/bundle.js';
import { PolicyEngine } from '../policy/engine.js';
import { BundleError } from '../policy/errors.js';
import type { BundlePayload } from '../policy/payload.js';
import { writeFileAtomic } from '../core/files.js';

/**
 * The pinned policy keys from every configured JWKS file (key rotation pins the old and the new
 * key side by side), with `retiredKids` (config `policy.retired_keys`) and keys marked
 * `"retired": true` in their JWKS refused from then on.
 */
export async function readPinnedKeys(files: string[], retiredKids: readonly string[] = []): Promise<TrustedKey[]> {
  const keys = mergeTrustedKeys(await Promise.all(files.map(readTrustedKeys)), retiredKids);
  if (keys.length === 0) throw new PlantgateError('BUNDLE_UNAVAILABLE', 'no pinned policy keys: refusing to trust any bundle');
  if (keys.every((k) => k.retired === true)) {
    throw new PlantgateError('BUNDLE_UNAVAILABLE', `every pinned policy key is retired (${keys.map((k) => k.kid).join(', ')}): no bundle could ever be accepted`);
  }
  return keys;
}

export type LoadResult =
  | { ok: true; revision: number; source: 'configured' | 'last-known-good' }
  | { ok: false; code: string; message: string };

export type CheckResult = { ok: true; revision: number; kid: string } | { ok: false; code: string; message: string };

export class PolicyState {
  engine: PolicyEngine | undefined;
  /** Resolution of wire addresses to the engine's assets and points (src/assets/resolver.ts), from the same bundle. */
  resolver: CommandResolver | undefined;
  issuers: TrustedIssuers | undefined;
  /** The verified payload behind `engine` (interlocks, assets) for the parts that need more than decisions. */
  payload: BundlePayload | undefined;
  /** The key that signed the active bundle: if it stops being trusted, the bundle stops being active. */
  activeKid: string | undefined;
  /**
   * Called with a verified payload just before it becomes active; a throw refuses the bundle (the
   * gateway applies the bundle's revocations here, so they are in force before its rules are).
   */
  onActivate: ((payload: BundlePayload) => void) | undefined;
  private highestRevision = 0;
  private readonly lkgFile: string;
  private readonly stateFile: string;

  constructor(
    private readonly opts: { stateDir: string; pinned: TrustedKey[]; clock: Clock; logger: Logger; readsWhenExpired: boolean; resolvers: ResolverFactories },
  ) {
    this.lkgFile = path.join(opts.stateDir, 'bundle.lkg.jws');
    this.stateFile = path.join(opts.stateDir, 'policy-state.json');
  }

  /**
   * Replaces the pinned keys (config reload). Takes effect at the next load: the active bundle
   * stays until a bundle verified against the new keys replaces it.
   */
  setPinnedKeys(keys: TrustedKey[]): void {
    this.opts.pinned = keys;
  }

  async init(): Promise<void> {
    await mkdir(this.opts.stateDir, { recursive: true });
    try {
      const saved = JSON.parse(await readFile(this.stateFile, 'utf8')) as { highest_revision?: number };
      this.highestRevision = saved.highest_revision ?? 0;
    } catch {
      this.highestRevision = 0;
    }
  }

  /** Loads the configured bundle; on failure falls back to the last-known-good copy. */
  async load(file: string): Promise<LoadResult> {
    const first = await this.tryLoad(file);
    if (first.ok) {
      await writeBundleFile(this.lkgFile, await readBundleFile(file));
      return { ok: true, revision: first.revision, source: 'configured' };
    }
    this.opts.logger.error({ file, code: first.code, msg: first.message }, first.code === 'RETIRED_KEY' ? 'bundle refused: signed by a retired key' : 'bundle refused');
    if (this.engine !== undefined) {
      // Keep serving the bundle already active, unless its own key was retired or unpinned since:
      // then nothing vouches for it any more and safe mode is the only honest state.
      const k = this.opts.pinned.find((p) => p.kid === this.activeKid);
      if (k !== undefined && k.retired !== true) return first;
      this.opts.logger.error({ kid: this.activeKid }, 'the active bundle was signed by a key that is no longer trusted: safe mode');
      this.engine = undefined;
      this.resolver = undefined;
      this.issuers = undefined;
      this.payload = undefined;
      this.activeKid = undefined;
    }
    const lkg = await this.tryLoad(this.lkgFile);
    if (lkg.ok) {
      this.opts.logger.warn({ revision: lkg.revision }, 'booted from last-known-good bundle');
      return { ok: true, revision: lkg.revision, source: 'last-known-good' };
    }
    return first;
  }

  /**
   * Verifies a candidate bundle (signature, pinned and unretired key, revision, validity) without
   * activating it: a fetched bundle is checked before it is written as the gateway's bundle file.
   */
  async check(jws: string): Promise<CheckResult> {
    try {
      const payload = await verifyBundle(jws, this.opts.pinned, { now: this.opts.clock.now(), minRevision: this.highestRevision });
      PolicyEngine.fromPayload(payload, { readsWhenExpired: this.opts.readsWhenExpired });
      return { ok: true, revision: payload.revision, kid: String(decodeBundleUnverified(jws).header.kid) };
    } catch (err) {
      return { ok: false, code: err instanceof BundleError ? err.code : 'MALFORMED', message: (err as Error).message };
    }
  }

  private async tryLoad(file: string): Promise<{ ok: true; revision: number } | { ok: false; code: string; message: string }> {
    let jws: string;
    try {
      jws = await readBundleFile(file);
    } catch (err) {
      // Only a file that is not there is MISSING; an oversize one says so (TOO_LARGE).
      if (err instanceof BundleError) return { ok: false, code: err.code, message: err.message };
      const errno = (err as NodeJS.ErrnoException).code;
      return { ok: false, code: errno === 'ENOENT' ? 'MISSING' : 'UNREADABLE', message: (err as Error).message };
    }
    try {
      // Equal revision is allowed: a restart reloads the bundle it already accepted.
      const payload = await verifyBundle(jws, this.opts.pinned, { now: this.opts.clock.now(), minRevision: this.highestRevision });
      const engine = PolicyEngine.fromPayload(payload, { readsWhenExpired: this.opts.readsWhenExpired });
      const issuers = trustedIssuersFromJwks(engine.issuers());
      const resolver = bundleResolver(this.opts.resolvers, payload.assets);
      this.onActivate?.(payload);
      this.activeKid = String(decodeBundleUnverified(jws).header.kid);
      this.engine = engine;
      this.resolver = resolver;
      this.issuers = issuers;
      this.payload = payload;
      if (payload.revision > this.highestRevision) {
        this.highestRevision = payload.revision;
        await writeFileAtomic(this.stateFile, JSON.stringify({ highest_revision: this.highestRevision }) + '\n');
      }
      return { ok: true, revision: payload.revision };
    } catch (err) {
      const code = err instanceof BundleError ? err.code : 'MALFORMED';
      return { ok: false, code, message: (err as Error).message };
    }
  }
}
