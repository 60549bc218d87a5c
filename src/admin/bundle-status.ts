// What the operator API tells about the policy bundle (GET /v1/bundle): the active bundle's
// identity (name, revision, validity, signing key id, digest, where it came from) and the result
// of the last load attempt, which may have been refused while the previous bundle stays active.
// Owns that state only; loading and verifying belong to the gateway's PolicyState.
import { createHash } from 'node:crypto';
import { decodeProtectedHeader } from 'jose';

/** SHA-256 hex of the bundle bytes (as the audit BundleEvent.digest) and the JWS key id. */
export function bundleFingerprint(jws: string): { digest: string; keyId: string } {
  let keyId = '';
  try {
    const kid = decodeProtectedHeader(jws).kid;
    keyId = typeof kid === 'string' ? kid : '';
  } catch {
    keyId = '';
  }
  return { digest: createHash('sha256').update(jws, 'utf8').digest('hex'), keyId };
}

export interface ActiveBundle {
  name: string;
  revision: number;
  issuedAtMs: number;
  notBeforeMs: number;
  expiresAtMs: number;
  keyId: string;
  digest: string;
  /** The configured file, or 'last-known-good'. */
  source: string;
  loadedAtMs: number;
}

export interface LoadAttempt {
  atMs: number;
  ok: boolean;
  /** What asked for the load: 'start', 'sighup', 'operator <sub>'. */
  trigger: string;
  revision?: number;
  source?: string;
  /** Refusal code (BundleError code, MISSING, ...) and message when !ok. */
  code?: string;
  message?: string;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export class BundleStatus {
  active: ActiveBundle | undefined;
  lastLoad: LoadAttempt | undefined;

  loaded(bundle: ActiveBundle, trigger: string): void {
    this.active = bundle;
    this.lastLoad = { atMs: bundle.loadedAtMs, ok: true, trigger, revision: bundle.revision, source: bundle.source };
  }

  refused(atMs: number, trigger: string, source: string, code: string, message: string): void {
    this.lastLoad = { atMs, ok: false, trigger, source, code, message };
  }

  /** JSON of GET /v1/bundle. `state` is what a plant engineer checks first. */
  view(nowMs: number): Record<string, unknown> {
    const a = this.active;
    const state = a === undefined ? 'none' : a.expiresAtMs <= nowMs ? 'expired' : a.notBeforeMs > nowMs ? 'not_yet_valid' : 'active';
    return {
      state,
      active:
        a === undefined
          ? null
          : {
              name: a.name,
              revision: a.revision,
              issued_at: iso(a.issuedAtMs),
              not_before: iso(a.notBeforeMs),
              expires_at: iso(a.expiresAtMs),
              expires_in_sec: Math.floor((a.expiresAtMs - nowMs) / 1000),
              key_id: a.keyId,
              digest: a.digest,
              source: a.source,
              loaded_at: iso(a.loadedAtMs),
            },
      last_load:
        this.lastLoad === undefined
          ? null
          : {
              at: iso(this.lastLoad.atMs),
              ok: this.lastLoad.ok,
              trigger: this.lastLoad.trigger,
              ...(this.lastLoad.revision !== undefined ? { revision: this.lastLoad.revision } : {}),
              ...(this.lastLoad.source !== undefined ? { source: this.lastLoad.source } : {}),
              ...(this.lastLoad.code !== undefined ? { code: this.lastLoad.code, message: this.lastLoad.message } : {}),
            },
    };
  }
}
