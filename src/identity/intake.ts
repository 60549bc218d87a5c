// Token intake (docs/identity.md, Token intake): the one place a presented access token becomes a
// Subject the gateway will act on, whatever carried it — the agent API (a Modbus agent registering
// its token), the MCP front (a bearer token on each request), an OPC UA ActivateSession, an
// operator registering a static identity's token. Verification (verify.ts, through the verified-
// token cache), then what a token must also be at the moment it is accepted: not expired without
// leeway (commands never run on an expired token), not revoked, admissible where it is registered,
// and its acceptance recorded in the audit before anyone relies on it. Every refusal is recorded
// too, naming the token when verification got far enough to know it.
// Owns that order; never logs or stores the token, never accepts one the audit could not record.
import { decodeProtectedHeader } from 'jose';
import type { Clock } from '../core/clock.js';
import type { Assurance, Subject } from '../core/command.js';
import { PlantgateError } from '../core/errors.js';
import type { Reason } from '../core/reasons.js';
import type { TrustedIssuers } from './issuers.js';
import type { TokenRegistry } from './registry.js';
import type { RevocationStore } from './revocation.js';
import type { VerifiedTokenCache } from './token-cache.js';
import { TokenError } from './token-error.js';
import { verifyAccessToken, type VerifyContext } from './verify.js';

/** What the active policy bundle says about tokens; undefined while no bundle is loaded. */
export interface TokenTrust {
  issuers: TrustedIssuers;
  audience: string | string[];
  maxTokenTtlSec: number;
}

export interface TokenIntakeOptions {
  trust(): TokenTrust | undefined;
  clock: Clock;
  leewaySec: number;
  revocations?: Pick<RevocationStore, 'isRevoked'>;
  /** Lets a token presented again skip the signature check (same token, same context). */
  cache?: VerifiedTokenCache;
  /** Audit first: returns false when the acceptance could not be recorded (the token is then refused). */
  onAccepted(subject: Subject): boolean;
  /** A refusal, with the token's Subject when verification got far enough to know it. */
  onRejected?(who: Presenter, reason: Reason, detail: string, subject?: Subject): void;
}

/** Who presents the token: the session's identity the token must name and be bound to. */
export interface Presenter {
  workloadId: string;
  /** x5t#S256 of the client certificate; absent for a static (plaintext) identity. */
  certThumbprint?: string;
  certRole?: string;
  assurance: Assurance;
  /** The one audience this front accepts instead of the bundle's (the MCP front's resource URI, RFC 8707). */
  audience?: string;
  /**
   * The token rides on every request (an MCP bearer token): one already accepted in the same
   * context is neither verified nor recorded again; its expiry and revocation still are checked.
   */
  everyRequest?: boolean;
  /** The front it came through, when the audit should name it ('MCP'): prefixes a refusal's detail. */
  via?: string;
}

/** A refusal that is not about the token itself: no bundle to verify against, no audit to record in. */
export class IntakeError extends PlantgateError {
  constructor(
    reason: 'BUNDLE_UNAVAILABLE' | 'AUDIT_UNAVAILABLE',
    readonly detail: 'NO_BUNDLE' | 'AUDIT_UNAVAILABLE',
    message: string,
  ) {
    super(reason, message);
  }
}

/** The detail of a refusal the intake threw, '' for other PlantgateErrors. */
export const detailOf = (err: PlantgateError): string => (err as PlantgateError & { detail?: string }).detail ?? '';

export class TokenIntake {
  constructor(private readonly opts: TokenIntakeOptions) {}

  /**
   * The Subject of a token presented by `who`. `admit` runs the checks of whoever registers the
   * token (the registry's per-identity cap) before the acceptance is recorded, so a token refused
   * there is never on record as accepted. Throws IntakeError (BUNDLE_UNAVAILABLE,
   * AUDIT_UNAVAILABLE) or TokenError, each recorded as a refusal first.
   */
  async accept(jwt: string, who: Presenter, admit?: (subject: Subject) => void): Promise<Subject> {
    let subject: Subject | undefined;
    try {
      const { clock, cache } = this.opts;
      const trust = this.opts.trust();
      if (trust === undefined) throw new IntakeError('BUNDLE_UNAVAILABLE', 'NO_BUNDLE', 'no valid policy bundle loaded: cannot verify tokens');
      const ctx: VerifyContext = {
        issuers: trust.issuers,
        audience: who.audience ?? trust.audience,
        expectedSub: who.workloadId,
        assurance: who.assurance,
        maxTtlSec: trust.maxTokenTtlSec,
        leewaySec: this.opts.leewaySec,
        clock,
      };
      if (who.certThumbprint !== undefined) ctx.certThumbprint = who.certThumbprint;
      if (who.certRole !== undefined) ctx.certRole = who.certRole;
      subject = cache?.get(jwt, ctx);
      const seen = subject !== undefined;
      if (cache !== undefined) {
        if (seen) cache.hits++;
        else cache.misses++;
      }
      subject ??= await verifyAccessToken(jwt, ctx);
      // Commands never run on an expired token (no leeway per command): refuse one jose let through.
      if (subject.expiresAtMs <= clock.now()) throw new TokenError('TOKEN_EXPIRED', 'EXPIRED', 'token has expired');
      if (this.opts.revocations?.isRevoked(subject) !== undefined) throw new TokenError('TOKEN_REVOKED', 'REVOKED', 'token has been revoked');
      admit?.(subject);
      if (!(seen && who.everyRequest === true) && !this.opts.onAccepted(subject)) {
        throw new IntakeError('AUDIT_UNAVAILABLE', 'AUDIT_UNAVAILABLE', 'the token could not be recorded in the audit log');
      }
      if (!seen) cache?.set(jwt, ctx, subject);
      return subject;
    } catch (err) {
      if (err instanceof PlantgateError) this.opts.onRejected?.(who, err.reason, detailOf(err), subject);
      throw err;
    }
  }

  /**
   * Accepts the token and binds it to the presenter's workload in `tokens` (the agent API, a static
   * identity's registration): used for every command on that identity's connections until it
   * expires or is replaced. The key id lets a bundle reload that drops the key kill the binding.
   */
  async register(jwt: string, who: Presenter, tokens: TokenRegistry): Promise<Subject> {
    const subject = await this.accept(jwt, who, (s) => tokens.admit(who.workloadId, s));
    const kid = decodeProtectedHeader(jwt).kid;
    tokens.put(who.workloadId, subject, { keyId: typeof kid === 'string' ? kid : undefined });
    return subject;
  }

  /** Records a presentation refused before there was a token to verify (no token, malformed header). */
  refused(who: Presenter, reason: Reason, detail: string): void {
    this.opts.onRejected?.(who, reason, detail);
  }
}
