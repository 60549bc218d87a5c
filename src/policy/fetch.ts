// Downloads a signed bundle from its HTTPS distribution point: one conditional GET (If-None-Match
// with the last ETag; 304 means "what you have is current"), bounded in time and in size. Owns the
// HTTP exchange only. It never trusts what it downloads: the caller verifies the signature before
// the bytes go anywhere near the gateway's bundle file. Plain http is refused: a bundle is signed,
// but a downgrade to plaintext would still let anyone on the path replay an old, valid bundle
// until its expiry or hide new ones (revocations) from the gateway.
import { request } from 'node:https';
import { PlantgateError } from '../core/errors.js';
import { MAX_BUNDLE_BYTES } from './bundle.js';

export type FetchErrorCode = 'BAD_URL' | 'UNREACHABLE' | 'TIMEOUT' | 'TOO_LARGE' | 'HTTP_STATUS';

export class FetchError extends PlantgateError {
  readonly code: FetchErrorCode;
  constructor(code: FetchErrorCode, message: string, options?: { cause?: unknown }) {
    super('BUNDLE_UNAVAILABLE', `${code}: ${message}`, options);
    this.code = code;
  }
}

export interface FetchOptions {
  url: string;
  /** CA bundle (PEM) the server's certificate must chain to; absent, the system roots. */
  ca?: string | Buffer;
  /** Whole exchange, connect to last byte. */
  timeoutMs: number;
  /** Larger bodies are cut off and refused (TOO_LARGE). */
  maxBytes?: number;
  /** The ETag of the bundle already held: sent as If-None-Match. */
  etag?: string;
}

export type FetchResult = { status: 'not-modified' } | { status: 'fetched'; jws: string; etag: string | undefined };

export function fetchBundle(opts: FetchOptions): Promise<FetchResult> {
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch {
    return Promise.reject(new FetchError('BAD_URL', `not a URL: ${opts.url}`));
  }
  if (url.protocol !== 'https:') return Promise.reject(new FetchError('BAD_URL', `${url.protocol} is not allowed; bundles are fetched over https only`));
  const maxBytes = Math.min(opts.maxBytes ?? MAX_BUNDLE_BYTES, MAX_BUNDLE_BYTES);
  const where = `${url.origin}${url.pathname}`; // never the query string: it may carry a token

  return new Promise<FetchResult>((resolve, reject) => {
    let settled = false;
    const finish = (err: FetchError | undefined, result?: FetchResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(result!);
    };
    const headers: Record<string, string> = { accept: 'application/jose, application/octet-stream;q=0.5, */*;q=0.1' };
    if (opts.etag !== undefined) headers['if-none-match'] = opts.etag;
    const req = request(url, { method: 'GET', headers, ...(opts.ca !== undefined ? { ca: opts.ca } : {}), agent: false }, (res) => {
      const status = res.statusCode ?? 0;
      if (status === 304) {
        res.resume();
        finish(undefined, { status: 'not-modified' });
        return;
      }
      if (status !== 200) {
        res.resume();
        finish(new FetchError('HTTP_STATUS', `${where} answered ${status}`));
        return;
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBytes) {
        finish(new FetchError('TOO_LARGE', `${where} announces ${declared} bytes (limit ${maxBytes})`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          finish(new FetchError('TOO_LARGE', `${where} sent more than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('error', (err) => finish(new FetchError('UNREACHABLE', `${where}: ${err.message}`, { cause: err })));
      res.on('end', () => {
        const etag = res.headers.etag;
        finish(undefined, { status: 'fetched', jws: Buffer.concat(chunks).toString('utf8').trim(), etag: typeof etag === 'string' && etag !== '' ? etag : undefined });
      });
    });
    const timer = setTimeout(() => finish(new FetchError('TIMEOUT', `${where} did not answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    req.on('error', (err) => finish(new FetchError('UNREACHABLE', `${where}: ${err.message}`, { cause: err })));
    req.end();
  });
}
