// Small HTTP helpers shared by the admin APIs: bounded body reading and JSON answers.
// Owns nothing else; never logs bodies (they may carry tokens).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Server as TlsServer } from 'node:tls';
import { guardHandshakes, type ConnectionLimits, type HandshakeRefusal } from '../identity/handshakes.js';

/**
 * How much of an oversized body is read and thrown away so the client can read the 413: a socket
 * closed with unread data in it is reset, and a reset discards the answer before the client sees it.
 */
const DISCARD_LIMIT = 1024 * 1024;

/**
 * Reads at most `max` bytes; resolves undefined when the body is larger. The rest of such a body is
 * read and dropped (up to DISCARD_LIMIT, then the connection is destroyed), never buffered.
 */
export function readBody(req: IncomingMessage, max: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        chunks.length = 0;
        resolve(undefined); // once: later calls (and 'end') do not change a settled promise
        if (size > max + DISCARD_LIMIT) req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** A JSON body of at most `max` bytes, or why not (413 BODY_TOO_LARGE, 400 BAD_JSON): the operator API's bodies. */
export async function readJsonBody(req: IncomingMessage, max: number): Promise<{ value: unknown } | { status: 400 | 413; detail: 'BODY_TOO_LARGE' | 'BAD_JSON'; message: string }> {
  const text = await readBody(req, max);
  if (text === undefined) return { status: 413, detail: 'BODY_TOO_LARGE', message: `body larger than ${max} bytes` };
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    return { status: 400, detail: 'BAD_JSON', message: 'body is not valid JSON' };
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The path of a request URL without its query string. */
export function pathOf(url: string | undefined): string {
  const u = url ?? '/';
  const q = u.indexOf('?');
  return q === -1 ? u : u.slice(0, q);
}

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

/** An HTTPS listener's handshake bounds and where a refused handshake is reported (the audit). */
export interface HandshakeBounds {
  limits: ConnectionLimits;
  onRefused(r: HandshakeRefusal): void;
}

/**
 * Listens and hands back the bound port and a close that also ends kept-alive connections. An
 * HTTPS server with `handshakes` gets the handshake deadline and caps (src/identity/handshakes.ts).
 */
export async function listen(server: Server, host: string, port: number, handshakes?: HandshakeBounds): Promise<RunningServer> {
  if (handshakes !== undefined && server instanceof TlsServer) guardHandshakes(server, handshakes.limits, handshakes.onRefused);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
