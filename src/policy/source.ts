// Bundle distribution: where new bundles come from and how they reach the gateway. Two sources:
// a watched file path (an operator or a config-management tool drops a bundle there) and an HTTPS
// URL polled with ETag. Both hand every candidate to the same `offer`: verify first (through the
// caller's `check`, the same verifier as every load), only then write it as the gateway's bundle
// file (atomically) and ask the gateway to activate it. This module never decides trust itself
// and never touches the active policy: a source failing (unreachable, refused, torn file) leaves
// the active bundle, and the last-known-good copy behind it, exactly as they were.
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import type { Logger } from '../core/log.js';
import { BundleError, readBundleFile, writeBundleFile } from './bundle.js';
import { FetchError, fetchBundle } from './fetch.js';

/** What the gateway lends a source: its verifier, its activation and its refusal bookkeeping. */
export interface BundleSourceHooks {
  /** The gateway's bundle file: what `activate` loads (a function: SIGHUP may change it). */
  bundleFile(): string;
  /** Verifies a candidate without activating it (PolicyState.check). */
  check(jws: string): Promise<{ ok: true; revision: number } | { ok: false; code: string; message: string }>;
  /** Loads the bundle file (the gateway's serialised reloadBundle); `trigger` goes to the audit. */
  activate(trigger: string): Promise<boolean>;
  /** A candidate was refused before it reached the bundle file (audit record, bundle status). */
  onRefused(code: string, message: string, trigger: string): void;
  logger: Logger;
}

export type OfferOutcome = 'activated' | 'unchanged' | 'refused' | 'activation-failed';

/** Verifies a candidate bundle, writes it as the bundle file and activates it. */
export async function offerBundle(jws: string, trigger: string, hooks: BundleSourceHooks): Promise<OfferOutcome> {
  const current = await readBundleFile(hooks.bundleFile()).catch(() => undefined);
  // The same bytes are already the bundle file: a restart's first fetch, or a touch of the file.
  if (current === jws.trim()) return 'unchanged';
  const checked = await hooks.check(jws);
  if (!checked.ok) {
    hooks.logger.error({ trigger, code: checked.code, msg: checked.message }, 'fetched bundle refused; the active bundle stays');
    hooks.onRefused(checked.code, checked.message, trigger);
    return 'refused';
  }
  await writeBundleFile(hooks.bundleFile(), jws.trim());
  return (await hooks.activate(trigger)) ? 'activated' : 'activation-failed';
}

export interface BundleSource {
  close(): Promise<void>;
}

export interface FileSourceOptions {
  /** The file to watch. When it is the bundle file itself, a change is simply reloaded. */
  file: string;
  /** Quiet time after the last change event before the file is read (editors write in bursts). */
  debounceMs: number;
}

export interface FileSourceEvents {
  /** After each debounced change has been handled. */
  handled: [OfferOutcome | 'missing' | 'failed'];
}

/**
 * Watches a bundle file. The directory is watched, not the file: an atomic replace (write a temp
 * file, rename it over the target; what `plantgate bundle build`, editors and config tools do)
 * swaps the inode, and a watch on the old inode would never fire again.
 */
export class FileBundleSource extends EventEmitter<FileSourceEvents> implements BundleSource {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly opts: FileSourceOptions,
    private readonly hooks: BundleSourceHooks,
  ) {
    super();
  }

  /** Watching the gateway's own bundle file: a change is reloaded (the load verifies it) rather than copied. */
  private get sameFile(): boolean {
    return path.resolve(this.opts.file) === path.resolve(this.hooks.bundleFile());
  }

  start(): this {
    const dir = path.dirname(path.resolve(this.opts.file));
    const base = path.basename(this.opts.file);
    this.watcher = watch(dir, { persistent: false }, (_event, name) => {
      // Some platforms report no name; then any change in the directory counts.
      if (name !== null && name !== undefined && name.toString() !== base) return;
      this.schedule();
    });
    this.watcher.on('error', (err) => this.hooks.logger.error({ dir, err: err.message }, 'bundle file watch failed; SIGHUP or the operator API still reload'));
    return this;
  }

  private schedule(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // One change handled at a time; a burst during a load is handled after it.
      this.running = this.running.then(() => this.handle());
    }, this.opts.debounceMs);
  }

  private async handle(): Promise<void> {
    let outcome: OfferOutcome | 'missing' | 'failed';
    try {
      if (this.sameFile) {
        // A rename-away or delete fires too: nothing to load, the active bundle stays.
        const exists = await stat(this.opts.file).then(() => true, () => false);
        outcome = !exists ? 'missing' : (await this.hooks.activate(`watch ${this.opts.file}`)) ? 'activated' : 'activation-failed';
      } else {
        const trigger = `watch ${this.opts.file}`;
        const jws = await readBundleFile(this.opts.file).catch((err: unknown) => err);
        if (jws instanceof BundleError) {
          // There but refused unread (TOO_LARGE): said like any other refusal, not taken for missing.
          this.hooks.onRefused(jws.code, jws.message, trigger);
          outcome = 'refused';
        } else outcome = typeof jws !== 'string' ? 'missing' : await offerBundle(jws, trigger, this.hooks);
      }
    } catch (err) {
      this.hooks.logger.error({ file: this.opts.file, err: (err as Error).message }, 'bundle file change could not be handled');
      outcome = 'failed';
    }
    this.emit('handled', outcome);
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    await this.running;
  }
}

export interface UrlSourceOptions {
  url: string;
  ca?: string | Buffer;
  pollMs: number;
  timeoutMs: number;
  maxBytes: number;
  /** Ceiling of the exponential backoff after failed polls. */
  maxBackoffMs: number;
}

export type PollOutcome = OfferOutcome | 'not-modified' | 'unreachable';

export interface UrlSourceEvents {
  polled: [PollOutcome];
}

/**
 * Polls an HTTPS distribution point. 304 costs nothing; a new ETag is verified and activated; a
 * failure (network, timeout, HTTP error, oversize) keeps the active bundle and backs off
 * exponentially (pollMs · 2^failures, capped) so a fleet does not hammer a struggling server.
 */
export class UrlBundleSource extends EventEmitter<UrlSourceEvents> implements BundleSource {
  private etag: string | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly opts: UrlSourceOptions,
    private readonly hooks: BundleSourceHooks,
  ) {
    super();
  }

  /** Polls at once, then on the schedule. */
  start(): this {
    this.closed = false;
    this.loop(0);
    return this;
  }

  /** How long after the last poll the next one is due: pollMs, or the backoff after failures. */
  get nextDelayMs(): number {
    if (this.failures === 0) return this.opts.pollMs;
    return Math.min(this.opts.pollMs * 2 ** Math.min(this.failures, 30), this.opts.maxBackoffMs);
  }

  /** Consecutive failed polls (0 after any answer from the server that was handled). */
  get consecutiveFailures(): number {
    return this.failures;
  }

  /** Forgets the ETag so the next poll downloads and verifies again (e.g. after the pinned keys changed). */
  forgetEtag(): void {
    this.etag = undefined;
  }

  private loop(delayMs: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.pollOnce().finally(() => this.loop(this.nextDelayMs));
    }, delayMs);
  }

  /** One conditional GET and, for a new bundle, verify + write + activate. Never throws. */
  async pollOnce(): Promise<PollOutcome> {
    const trigger = `fetch ${originAndPath(this.opts.url)}`;
    let outcome: PollOutcome;
    try {
      const r = await fetchBundle({ url: this.opts.url, ca: this.opts.ca, timeoutMs: this.opts.timeoutMs, maxBytes: this.opts.maxBytes, etag: this.etag });
      if (r.status === 'not-modified') {
        outcome = 'not-modified';
      } else {
        outcome = await offerBundle(r.jws, trigger, this.hooks);
        // A refused bundle keeps its ETag too: it is reported once, not on every poll, until the
        // server publishes something else (or forgetEtag() after a key change).
        this.etag = r.etag;
      }
      this.failures = 0;
    } catch (err) {
      this.failures += 1;
      const code = err instanceof FetchError ? err.code : 'FAILED';
      this.hooks.logger.warn(
        { url: originAndPath(this.opts.url), code, msg: (err as Error).message, failures: this.failures, retryInMs: this.nextDelayMs },
        'bundle distribution point unreachable; keeping the active bundle',
      );
      outcome = 'unreachable';
    }
    this.emit('polled', outcome);
    return outcome;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running.catch(() => undefined);
  }
}

function originAndPath(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(bad url)';
  }
}

/** `policy.source` of the gateway config (structurally: this module does not import the gateway). */
export type BundleSourceConfig =
  | { file: string; watch: boolean; debounce_ms: number }
  | { url: string; ca?: string; poll_ms: number; timeout_ms: number; max_bytes: number; max_backoff_ms: number };

/** Starts the configured source (none for an unwatched file): the gateway's one call. */
export async function startBundleSource(config: BundleSourceConfig | undefined, hooks: BundleSourceHooks): Promise<FileBundleSource | UrlBundleSource | undefined> {
  if (config === undefined) return undefined;
  if ('file' in config) {
    return config.watch ? new FileBundleSource({ file: config.file, debounceMs: config.debounce_ms }, hooks).start() : undefined;
  }
  const ca = config.ca === undefined ? undefined : await readFile(config.ca);
  return new UrlBundleSource(
    { url: config.url, ca, pollMs: config.poll_ms, timeoutMs: config.timeout_ms, maxBytes: config.max_bytes, maxBackoffMs: config.max_backoff_ms },
    hooks,
  ).start();
}
