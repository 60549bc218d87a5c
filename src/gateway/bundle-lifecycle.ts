// The bundle lifecycle on a running gateway (docs/policy.md, "Bundle lifecycle"): loading the
// configured bundle file (or the last-known-good copy), one load at a time, recording every load and
// refusal in the bundle status and the audit, and keeping what changed since the previous bundle for
// the console. Owns the order of a load; verification and activation are PolicyState's, and what a
// new bundle rebuilds (interlocks, trusted keys, MCP tool lists) is the wiring's, through hooks.
import { bundleFingerprint, type BundleStatus } from '../admin/bundle-status.js';
import { bundleRecord, type AuditEvent } from '../audit/records.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { readBundleFile } from '../policy/bundle.js';
import { diffBundles } from '../policy/diff.js';
import type { PolicyState } from './policy-state.js';

export interface BundleLifecycleOptions {
  policy: PolicyState;
  bundleFile: string;
  /** The last-known-good copy: after every load, the active bundle (its bytes give digest and key id). */
  lkgFile: string;
  status: BundleStatus;
  clock: Clock;
  logger: Logger;
  /** Appends an audit event that gates nothing by itself. */
  record(event: AuditEvent): unknown;
  /** A bundle became active: rebuild what depends on it (before it is reported loaded). */
  onActivated(): void;
  /** A bundle was reported loaded (status and audit written). */
  onLoaded?(): void;
}

export class BundleLifecycle {
  bundleFile: string;
  /** The console's "what changed since the previous bundle" (since this gateway started). */
  changes: { from: number; to: number; lines: string[] } | undefined;
  private loading: Promise<unknown> = Promise.resolve();
  private closing = false;

  constructor(private readonly opts: BundleLifecycleOptions) {
    this.bundleFile = opts.bundleFile;
  }

  /** Loads the bundle file after any load in flight (a SIGHUP and an operator's reload never interleave). */
  reload(trigger = 'reload'): Promise<boolean> {
    const next = this.loading.then(() => this.load(trigger));
    this.loading = next.catch(() => undefined);
    return next;
  }

  /** A bundle the distribution refused before it became the bundle file. */
  refused(code: string, message: string, trigger: string): void {
    this.opts.status.refused(this.opts.clock.now(), trigger, this.bundleFile, code, message);
    this.opts.record(bundleRecord({ kind: 'rejected', revision: 0, source: trigger, reason: 'BUNDLE_UNAVAILABLE', detail: `${code}: ${message} (trigger: ${trigger})` }));
  }

  /** No new load starts; resolves when the one in flight is done. */
  close(): Promise<unknown> {
    this.closing = true;
    return this.loading;
  }

  private async load(trigger: string): Promise<boolean> {
    const { policy, status, clock, logger } = this.opts;
    if (this.closing) return false;
    const before = policy.payload;
    const bundleFile = this.bundleFile;
    const result = await policy.load(bundleFile);
    // A load that finishes while the gateway shuts down must not start new pollers.
    if (this.closing) return false;
    if (result.ok) {
      const after = policy.payload;
      if (before !== undefined && after !== undefined && after !== before) {
        this.changes = { from: before.revision, to: after.revision, lines: diffBundles(before, after).map((c) => `${c.kind} ${c.what} ${c.id}${c.detail ? `: ${c.detail}` : ''}`) };
      }
      this.opts.onActivated();
      const source = result.source === 'configured' ? bundleFile : 'last-known-good';
      const fp = await readBundleFile(this.opts.lkgFile).then(bundleFingerprint, () => ({ digest: '', keyId: '' }));
      const p = policy.payload;
      status.loaded(
        {
          name: p?.name ?? '', revision: result.revision, issuedAtMs: (p?.issued_at ?? 0) * 1000, notBeforeMs: (p?.not_before ?? 0) * 1000,
          expiresAtMs: (p?.expires_at ?? 0) * 1000, keyId: fp.keyId, digest: fp.digest, source, loadedAtMs: clock.now(),
        },
        trigger,
      );
      this.opts.record(bundleRecord({ kind: 'loaded', revision: result.revision, source, digest: fp.digest, keyId: fp.keyId, detail: `trigger: ${trigger}` }));
      logger.info({ revision: result.revision, source: result.source, trigger }, 'policy bundle active');
      this.opts.onLoaded?.();
    } else {
      status.refused(clock.now(), trigger, bundleFile, result.code, result.message);
      this.opts.record(bundleRecord({ kind: 'rejected', revision: 0, source: bundleFile, reason: 'BUNDLE_UNAVAILABLE', detail: `${result.code}: ${result.message} (trigger: ${trigger})` }));
    }
    return result.ok;
  }
}
