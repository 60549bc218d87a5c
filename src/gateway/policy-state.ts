// Holds the active policy: the verified bundle compiled into an engine, and the token issuers it
// trusts. Loading verifies the signature against the pinned keys, refuses rollbacks (the highest
// revision ever accepted is kept in the state directory), and keeps the last-known-good bundle on
// disk so the gateway boots from it when the configured file is missing or bad. Swapping the
// active engine is one assignment: a command sees either the old bundle or the new one.
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../core/clock.js';
import { PlantgateError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { trustedIssuersFromJwks, type TrustedIssuers } from '../identity/issuers.js';
import { readBundleFile, readTrustedKeys, verifyBundle, writeBundleFile, type TrustedKey } from '../policy/bundle.js';
import { PolicyEngine } from '../policy/engine.js';
import { BundleError } from '../policy/errors.js';
import type { BundlePayload } from '../policy/payload.js';
import { writeFileAtomic } from '../core/files.js';

export async function readPinnedKeys(files: string[]): Promise<TrustedKey[]> {
  const keys = (await Promise.all(files.map(readTrustedKeys))).flat();
  if (keys.length === 0) throw new PlantgateError('BUNDLE_UNAVAILABLE', 'no pinned policy keys: refusing to trust any bundle');
  return keys;
}

export type LoadResult =
  | { ok: true; revision: number; source: 'configured' | 'last-known-good' }
  | { ok: false; code: string; message: string };

export class PolicyState {
  engine: PolicyEngine | undefined;
  issuers: TrustedIssuers | undefined;
  /** The verified payload behind `engine` (interlocks, assets) for the parts that need more than decisions. */
  payload: BundlePayload | undefined;
  private highestRevision = 0;
  private readonly lkgFile: string;
  private readonly stateFile: string;

  constructor(
    private readonly opts: { stateDir: string; pinned: TrustedKey[]; clock: Clock; logger: Logger; readsWhenExpired: boolean },
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
    this.opts.logger.error({ file, code: first.code, msg: first.message }, 'bundle refused');
    if (this.engine !== undefined) return first; // keep serving the bundle already active
    const lkg = await this.tryLoad(this.lkgFile);
    if (lkg.ok) {
      this.opts.logger.warn({ revision: lkg.revision }, 'booted from last-known-good bundle');
      return { ok: true, revision: lkg.revision, source: 'last-known-good' };
    }
    return first;
  }

  private async tryLoad(file: string): Promise<{ ok: true; revision: number } | { ok: false; code: string; message: string }> {
    let jws: string;
    try {
      jws = await readBundleFile(file);
    } catch (err) {
      return { ok: false, code: 'MISSING', message: (err as Error).message };
    }
    try {
      // Equal revision is allowed: a restart reloads the bundle it already accepted.
      const payload = await verifyBundle(jws, this.opts.pinned, { now: this.opts.clock.now(), minRevision: this.highestRevision });
      const engine = PolicyEngine.fromPayload(payload, { readsWhenExpired: this.opts.readsWhenExpired });
      const issuers = trustedIssuersFromJwks(engine.issuers());
      this.engine = engine;
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
