// Token intake (docs/identity.md): the one place a presented access token becomes a Subject the
// gateway will act on, whatever carried it (an OPC UA ActivateSession, an operator registering a
// static identity's token). Verification (verify.ts), then what a token must also be at the moment
// it is accepted: not expired without leeway (commands never run on an expired token), not revoked,
// and its acceptance recorded in the audit before anyone relies on it.
// Owns that order; never logs or stores the token, never accepts one the audit could not record.
import type { Clock } from '../core/clock.js';
import type { Assurance, Subject } from '../core/command.js';
import { PlantgateError } from '../core/errors.js';
import type { TrustedIssuers } from './issuers.js';
import type { RevocationStore } from './revocation.js';
import { TokenError } from './token-error.js';
import { verifyAccessToken } from './verify.js';

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
  /** Audit first: returns false when the acceptance could not be recorded (the token is then refused). */
  onAccepted(subject: Subject): boolean;
}

/** Who presents the token: the session's identity the token must name and be bound to. */
export interface Presenter {
  workloadId: string;
  /** x5t#S256 of the client certificate; absent for a static (plaintext) identity. */
  certThumbprint?: string;
  certRole?: string;
  assurance: Assurance;
}

export class TokenIntake {
  constructor(private readonly opts: TokenIntakeOptions) {}

  /**
   * The Subject of a token presented by `who`. Throws PlantgateError BUNDLE_UNAVAILABLE (no
   * bundle to verify against) or AUDIT_UNAVAILABLE (acceptance not recordable), or TokenError.
   */
  async accept(jwt: string, who: Presenter): Promise<Subject> {
    const { clock } = this.opts;
    const trust = this.opts.trust();
    if (trust === undefined) throw new PlantgateError('BUNDLE_UNAVAILABLE', 'no valid policy bundle loaded: cannot verify tokens');
    const subject = await verifyAccessToken(jwt, {
      issuers: trust.issuers,
      audience: trust.audience,
      expectedSub: who.workloadId,
      ...(who.certThumbprint !== undefined ? { certThumbprint: who.certThumbprint } : {}),
      ...(who.certRole !== undefined ? { certRole: who.certRole } : {}),
      assurance: who.assurance,
      maxTtlSec: trust.maxTokenTtlSec,
      leewaySec: this.opts.leewaySec,
      clock,
    });
    // Commands never run on an expired token (no leeway per command): refuse one jose let through.
    if (subject.expiresAtMs <= clock.now()) throw new TokenError('TOKEN_EXPIRED', 'EXPIRED', 'token has expired');
    if (this.opts.revocations?.isRevoked(subject) !== undefined) throw new TokenError('TOKEN_REVOKED', 'REVOKED', 'token has been revoked');
    if (!this.opts.onAccepted(subject)) throw new PlantgateError('AUDIT_UNAVAILABLE', 'the token could not be recorded in the audit log');
    return subject;
  }
}
