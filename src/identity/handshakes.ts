// Bounds on TLS handshakes for every agent-facing TLS listener (Modbus/TCP
// Security, the agent and operator APIs, MCP): a handshake must finish within a deadline counted
// from the TCP accept (a trickle of bytes does not extend it), a source address and the listener
// as a whole may hold only so many handshakes in progress, and a connection over either cap is
// closed at once. Every connection that ends without a finished handshake is reported once, with
// its source address, so the caller can audit it (docs/configuration.md, Hostile connections).
//
// Why this module exists: node's `handshakeTimeout` only emits 'tlsClientError' — a tls.Server's
// socket stays open, forever, unless the listener destroys it — and its timer restarts with every
// byte. Owns the pending-handshake bookkeeping of the servers it guards; never reads application
// data, never decides who an identity is (the listener does that after the handshake).
import type net from 'node:net';
import type tls from 'node:tls';
import type { Reason } from '../core/reasons.js';

export interface ConnectionLimits {
  /** A TLS handshake not finished this long after the TCP accept is closed (TLS_HANDSHAKE_TIMEOUT). */
  handshakeTimeoutMs: number;
  /** Handshakes in progress on one listener; more are closed at once (TOO_MANY_HANDSHAKES). */
  maxPendingHandshakes: number;
  /** Handshakes in progress from one source address on one listener; more are closed at once. */
  maxPendingHandshakesPerSource: number;
  /** An agent's Modbus connection that sends no request for this long is closed (0: never). */
  idleTimeoutMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  handshakeTimeoutMs: 10_000,
  maxPendingHandshakes: 512,
  maxPendingHandshakesPerSource: 32,
  idleTimeoutMs: 300_000,
};

/** Why a connection ended before (or instead of) a finished handshake. */
export type HandshakeRefusalCode = 'TLS_HANDSHAKE' | 'TLS_HANDSHAKE_TIMEOUT' | 'TOO_MANY_HANDSHAKES';

export interface HandshakeRefusal {
  /** RATE_LIMITED for a cap, NO_IDENTITY otherwise (no identity was proven). */
  reason: Reason;
  code: HandshakeRefusalCode;
  /** `address:port` of the peer. */
  remoteAddress: string;
  message: string;
}

interface Pending {
  source: string;
  remoteAddress: string;
  raw: net.Socket;
  timer: NodeJS.Timeout;
  /** What ended it, once known (a TLS error, or the guard's own close). */
  ended?: HandshakeRefusal;
  reported: boolean;
}

export interface HandshakeGuard {
  /** Handshakes in progress now. */
  readonly pending: number;
}

/**
 * Guards a TLS (or HTTPS) server before it listens. `onRefused` is called once for every
 * connection that ends without a finished handshake: a TLS error, the peer leaving, the deadline,
 * or a cap (closed at accept, before the server answers a byte). The listener needs no
 * 'tlsClientError' handler of its own: the guard reports and closes.
 */
export function guardHandshakes(server: tls.Server, limits: ConnectionLimits, onRefused: (r: HandshakeRefusal) => void): HandshakeGuard {
  // Keyed by the peer's address and port: the same on the raw socket node hands to 'connection'
  // and on the TLS socket it later hands to 'secureConnection' / 'tlsClientError' (one TCP
  // connection), the only link between the two that node exposes.
  const pending = new Map<string, Pending>();
  const perSource = new Map<string, number>();
  const report = (p: Pending): void => {
    if (p.reported) return;
    p.reported = true;
    onRefused(p.ended ?? { reason: 'NO_IDENTITY', code: 'TLS_HANDSHAKE', remoteAddress: p.remoteAddress, message: 'the peer closed the connection before the TLS handshake finished' });
  };
  const settle = (key: string, p: Pending): void => {
    if (pending.get(key) !== p) return;
    pending.delete(key);
    clearTimeout(p.timer);
    const left = (perSource.get(p.source) ?? 1) - 1;
    if (left <= 0) perSource.delete(p.source);
    else perSource.set(p.source, left);
  };
  const end = (p: Pending, refusal: HandshakeRefusal): void => {
    p.ended ??= refusal;
    p.raw.destroy();
  };

  server.on('connection', (raw: net.Socket) => {
    const source = raw.remoteAddress;
    if (source === undefined) {
      // Reset before node could read its address: nobody is left to answer.
      raw.destroy();
      return;
    }
    const remoteAddress = `${source}:${raw.remotePort ?? ''}`;
    const fromSource = perSource.get(source) ?? 0;
    if (pending.size >= limits.maxPendingHandshakes || fromSource >= limits.maxPendingHandshakesPerSource) {
      const which =
        pending.size >= limits.maxPendingHandshakes
          ? `${pending.size} TLS handshakes in progress on this listener (limit ${limits.maxPendingHandshakes})`
          : `${fromSource} TLS handshakes in progress from ${source} (limit ${limits.maxPendingHandshakesPerSource})`;
      raw.destroy();
      onRefused({ reason: 'RATE_LIMITED', code: 'TOO_MANY_HANDSHAKES', remoteAddress, message: `closed at accept: ${which}` });
      return;
    }
    const key = `${source}|${raw.remotePort ?? ''}`;
    const p: Pending = {
      source,
      remoteAddress,
      raw,
      reported: false,
      timer: setTimeout(
        () => end(p, { reason: 'NO_IDENTITY', code: 'TLS_HANDSHAKE_TIMEOUT', remoteAddress, message: `TLS handshake not finished within ${limits.handshakeTimeoutMs} ms of the connection` }),
        limits.handshakeTimeoutMs,
      ),
    };
    p.timer.unref();
    pending.set(key, p);
    perSource.set(source, fromSource + 1);
    raw.once('close', () => {
      // Still pending: it ended without a finished handshake (a handshake that finished was settled).
      if (pending.get(key) !== p) return;
      settle(key, p);
      report(p);
    });
  });

  // Before the listener's own handler, so the handshake counts as finished when it sees the socket.
  server.prependListener('secureConnection', (socket: tls.TLSSocket) => {
    const key = `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`;
    const p = pending.get(key);
    if (p !== undefined) settle(key, p);
  });

  // First, while the socket still has its address (https.Server's own listener destroys it).
  server.prependListener('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
    // The "socket hang up" that follows a close has no address left, and the close was reported.
    const key = `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`;
    const p = pending.get(key);
    if (p !== undefined) {
      end(
        p,
        err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT'
          ? { reason: 'NO_IDENTITY', code: 'TLS_HANDSHAKE_TIMEOUT', remoteAddress: p.remoteAddress, message: 'TLS handshake silent for node\'s handshake timeout' }
          : { reason: 'NO_IDENTITY', code: 'TLS_HANDSHAKE', remoteAddress: p.remoteAddress, message: err.message },
      );
    }
    // node leaves a tls.Server's socket open after an error it reports here (a timeout above all).
    socket.destroy();
  });

  return {
    get pending() {
      return pending.size;
    },
  };
}
