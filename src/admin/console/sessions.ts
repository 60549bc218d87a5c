// Console sessions (docs/operator.md, "Web console"): after a sign-in with an operator token or an
// operator's client certificate, the browser holds only a random session id in a cookie
// (`__Host-` prefix, HttpOnly, Secure, SameSite=Strict); state-changing requests also carry the
// session's CSRF token (synchronizer token) and must come from our own origin.
// Owns session ids, their bounded store, cookies and CSRF checks. Never stores or logs the
// operator's bearer token: a session keeps who signed in, their roles and the token's jti only.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../../core/clock.js';

export const SESSION_COOKIE = '__Host-pg_session';
/** Double-submit cookie of the sign-in form (there is no session yet to hold a CSRF token). */
export const LOGIN_COOKIE = '__Host-pg_login';

export interface ConsoleOperator {
  sub: string;
  roles: string[];
  isOperator: boolean;
  /** The token's jti (token sign-in), '' for a certificate. */
  jti: string;
  issuer: string;
  via: 'token' | 'certificate';
}

export interface ConsoleSession {
  id: string;
  csrf: string;
  operator: ConsoleOperator;
  createdAtMs: number;
  expiresAtMs: number;
  /** One message for the next page shown (the result of a form post). */
  flash?: { ok: boolean; text: string };
}

export function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

export function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  return out;
}

export function setCookie(name: string, value: string, maxAgeSec: number): string {
  return `${name}=${value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSec}`;
}

/**
 * A state-changing request comes from a page of ours: the browser's Origin (or, failing that,
 * Sec-Fetch-Site) must say so. Browsers send at least one of them on every POST; a request with
 * neither is not a browser's and is refused too.
 */
export function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (typeof origin === 'string') return origin === `https://${req.headers.host ?? ''}`;
  return req.headers['sec-fetch-site'] === 'same-origin';
}

export class SessionStore {
  private readonly sessions: LRUCache<string, ConsoleSession>;

  constructor(
    private readonly clock: Clock,
    readonly ttlSec: number,
    max = 256,
  ) {
    // Bounded: the least recently used session is signed out first.
    this.sessions = new LRUCache({ max });
  }

  create(operator: ConsoleOperator, notAfterMs?: number): ConsoleSession {
    const now = this.clock.now();
    const s: ConsoleSession = {
      id: randomToken(),
      csrf: randomToken(),
      operator,
      createdAtMs: now,
      expiresAtMs: Math.min(now + this.ttlSec * 1000, notAfterMs ?? Infinity),
    };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The request's live session, or undefined (no cookie, unknown, expired). */
  of(req: IncomingMessage): ConsoleSession | undefined {
    const id = cookies(req).get(SESSION_COOKIE);
    if (id === undefined) return undefined;
    const s = this.sessions.get(id);
    if (s === undefined) return undefined;
    if (s.expiresAtMs <= this.clock.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    return s;
  }

  delete(id: string): void {
    this.sessions.delete(id);
  }

  /** Seconds left, for the cookie's Max-Age. */
  maxAgeSec(s: ConsoleSession): number {
    return Math.max(0, Math.floor((s.expiresAtMs - this.clock.now()) / 1000));
  }
}
