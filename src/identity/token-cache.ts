// Verified-token cache: lets an agent re-PUT the same token (retries, reconnects) without another
// signature verification. Keyed by the SHA-256 of the token so the token itself is never held.
// It never widens what a token may do: an entry is only reused for the same verification context
// (same issuers object, audience, limits, identity and certificate), and never past the token's exp.
// Revocation is not decided here; the pipeline checks it on every command, so caching cannot
// outlive a revocation.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../core/clock.js';
import type { Subject } from '../core/command.js';
import type { TrustedIssuers } from './issuers.js';
import { verifyAccessToken, DEFAULT_LEEWAY_SEC, type VerifyContext } from './verify.js';

interface Entry {
  subject: Subject;
  issuers: TrustedIssuers;
  audience: string;
  expectedSub: string;
  certThumbprint: string | undefined;
  certRole: string | undefined;
  assurance: string;
  maxTtlSec: number;
  leewaySec: number;
}

const audienceKey = (aud: string | string[]): string => (typeof aud === 'string' ? aud : aud.join('\u0000'));

export class VerifiedTokenCache {
  private readonly clock: Clock;
  private readonly cache: LRUCache<string, Entry>;

  constructor(opts: { clock: Clock; max?: number }) {
    this.clock = opts.clock;
    this.cache = new LRUCache<string, Entry>({
      max: opts.max ?? 10_000,
      // The cache's notion of time is our injected clock, so entries die exactly at token expiry
      // in tests and production alike; resolution 0 because a manual clock may jump.
      perf: { now: () => this.clock.now() },
      ttlResolution: 0,
    });
  }

  private static key(jwt: string): string {
    return createHash('sha256').update(jwt).digest('base64url');
  }

  /** A previously verified Subject for this token and context, if still unexpired. */
  get(jwt: string, ctx: VerifyContext): Subject | undefined {
    const key = VerifiedTokenCache.key(jwt);
    const e = this.cache.get(key);
    if (e === undefined) return undefined;
    if (e.subject.expiresAtMs <= this.clock.now()) {
      this.cache.delete(key);
      return undefined;
    }
    const same =
      e.issuers === ctx.issuers &&
      e.audience === audienceKey(ctx.audience) &&
      e.expectedSub === ctx.expectedSub &&
      e.certThumbprint === ctx.certThumbprint &&
      e.certRole === ctx.certRole &&
      e.assurance === ctx.assurance &&
      e.maxTtlSec === ctx.maxTtlSec &&
      e.leewaySec === (ctx.leewaySec ?? DEFAULT_LEEWAY_SEC);
    return same ? e.subject : undefined;
  }

  set(jwt: string, ctx: VerifyContext, subject: Subject): void {
    const ttl = subject.expiresAtMs - this.clock.now();
    if (ttl <= 0) return;
    this.cache.set(
      VerifiedTokenCache.key(jwt),
      {
        subject,
        issuers: ctx.issuers,
        audience: audienceKey(ctx.audience),
        expectedSub: ctx.expectedSub,
        certThumbprint: ctx.certThumbprint,
        certRole: ctx.certRole,
        assurance: ctx.assurance,
        maxTtlSec: ctx.maxTtlSec,
        leewaySec: ctx.leewaySec ?? DEFAULT_LEEWAY_SEC,
      },
      { ttl },
    );
  }

  /** Verifies through the cache: a hit skips the signature check, a miss verifies and remembers. */
  /** Presentations answered from the cache, and ones that needed a full verification (metrics). */
  hits = 0;
  misses = 0;

  async verify(jwt: string, ctx: VerifyContext): Promise<Subject> {
    const hit = this.get(jwt, ctx);
    if (hit !== undefined) {
      this.hits++;
      return hit;
    }
    this.misses++;
    const subject = await verifyAccessToken(jwt, ctx);
    this.set(jwt, ctx, subject);
    return subject;
  }

  /** Drop everything, e.g. when a new bundle changes the trusted issuers. */
  clear(): void {
    this.cache.clear();
  }

  get size(): number {
    return this.cache.size;
  }
}
