// Preflight: every check `plantgate serve` makes of a schema-valid configuration before it opens
// anything — the files it names are there, readable and what their field says (PEM certificates,
// a CA certificate, a private key matching the certificate, public policy keys), the upstream
// assets exist in the bundle, the directories can be written, no two listeners share an address
// and, on request, the listener ports are free. `serve` refuses to start on an error (exit 2) and
// `config check` runs the very same function, so the two can never disagree (docs/configuration.md,
// Checking a configuration). Reads files and, with `ports`, binds and releases sockets; it never
// writes, never starts a part and never reads a secret into a message.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { loadEd25519PrivateKey } from '../audit/keys.js';
import { SourceError } from '../core/errors.js';
import { fieldName, yamlLocator } from '../core/yaml.js';
import { algForJwk, readBundleFile, readTrustedKeys, verifyBundle, type TrustedKey } from '../policy/bundle.js';
import type { BundlePayload } from '../policy/payload.js';
import type { GatewayConfig } from './config.js';
import { readPinnedKeys } from './policy-state.js';

export interface PreflightReport {
  /** Problems `serve` refuses to start with (exit 2). */
  errors: SourceError[];
  /** What `serve` starts with, degraded (no valid bundle: last-known-good or safe mode). */
  warnings: SourceError[];
}

export interface PreflightOptions {
  /** Also bind each listener address and release it at once (a running gateway holds them). */
  ports?: boolean;
  /** ms since the epoch, for the bundle's validity. */
  now?: number;
}

type Field = ReadonlyArray<string | number>;

/** A listener's config field and address. */
export function listenerAddresses(config: GatewayConfig): Array<{ field: Field; host: string; port: number }> {
  const out: Array<{ field: Field; host: string; port: number }> = [];
  for (const [name, l] of Object.entries(config.listeners)) {
    if (l !== undefined) out.push({ field: ['listeners', name], host: l.host, port: l.port });
  }
  return out;
}

export async function preflight(config: GatewayConfig, opts: PreflightOptions = {}): Promise<PreflightReport> {
  const where = yamlLocator(await readFile(config.file, 'utf8').catch(() => ''));
  const report: PreflightReport = { errors: [], warnings: [] };
  const problem = (list: SourceError[]) => (field: Field, message: string) => {
    const { line, col } = where(field);
    list.push(new SourceError(config.file, line, col, fieldName(field), message));
  };
  const error = problem(report.errors);
  const warn = problem(report.warnings);

  /** The file's bytes, or an error naming the field and why it cannot be read. */
  const read = async (field: Field, file: string): Promise<Buffer | undefined> => {
    try {
      return await readFile(file);
    } catch (err) {
      error(field, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      return undefined;
    }
  };
  const certificates = async (field: Field, file: string): Promise<X509Certificate[] | undefined> => {
    const bytes = await read(field, file);
    if (bytes === undefined) return undefined;
    const parsed = parseCertificates(bytes);
    if (typeof parsed === 'string') {
      error(field, `${file}: ${parsed}`);
      return undefined;
    }
    return parsed;
  };
  const privateKey = async (field: Field, file: string): Promise<KeyObject | undefined> => {
    const bytes = await read(field, file);
    if (bytes === undefined) return undefined;
    try {
      return createPrivateKey(bytes);
    } catch {
      // Never the parser's message: it may quote the file's bytes.
      error(field, `${file}: not a PEM private key${hasBlock(bytes, 'CERTIFICATE') ? ' (it holds a certificate)' : ''}`);
      return undefined;
    }
  };
  const keyPair = async (certField: Field, keyField: Field, certFile: string, keyFile: string): Promise<boolean> => {
    const [certs, key] = await Promise.all([certificates(certField, certFile), privateKey(keyField, keyFile)]);
    if (certs === undefined || key === undefined) return false;
    if (!certs[0]!.checkPrivateKey(key)) {
      error(keyField, `${keyFile} does not match the certificate ${certFile} (${certs[0]!.subject.replace(/\n/g, ', ')})`);
      return false;
    }
    const expiry = Date.parse(certs[0]!.validTo);
    if (expiry < (opts.now ?? Date.now())) warn(certField, `${certFile}: expired on ${new Date(expiry).toISOString()}; peers will refuse it`);
    return true;
  };

  // --- the gateway's TLS identity and the CA its agents' certificates chain to ---
  const [cas, pairOk] = await Promise.all([certificates(['tls', 'ca'], config.tls.ca), keyPair(['tls', 'cert'], ['tls', 'key'], config.tls.cert, config.tls.key)]);
  for (const c of cas ?? []) {
    if (!c.ca) error(['tls', 'ca'], `${config.tls.ca}: '${c.subject.replace(/\n/g, ', ')}' is not a CA certificate (basicConstraints CA:FALSE)`);
  }
  if (cas !== undefined && pairOk && cas.every((c) => c.ca)) {
    // What the listeners themselves will do with the three files.
    try {
      const [ca, cert, key] = await Promise.all([readFile(config.tls.ca), readFile(config.tls.cert), readFile(config.tls.key)]);
      tls.createSecureContext({ ca, cert, key });
    } catch (err) {
      error(['tls'], `the TLS files do not make a TLS context: ${(err as Error).message.split('\n')[0]}`);
    }
  }

  // --- pinned policy keys and the bundle they must verify ---
  const keySets: TrustedKey[][] = [];
  for (const [i, file] of config.policy.trusted_keys.entries()) {
    const field = ['policy', 'trusted_keys', i];
    if ((await read(field, file)) === undefined) continue;
    try {
      const keys = await readTrustedKeys(file);
      for (const k of keys) algForJwk(k.publicJwk);
      keySets.push(keys);
    } catch (err) {
      error(field, (err as Error).message.replace(/^BUNDLE_UNAVAILABLE: /, ''));
    }
  }
  let pinned: TrustedKey[] | undefined;
  if (keySets.length === config.policy.trusted_keys.length) {
    try {
      pinned = await readPinnedKeys(config.policy.trusted_keys, config.policy.retired_keys);
    } catch (err) {
      error(['policy', 'trusted_keys'], (err as Error).message);
    }
  }
  if (pinned !== undefined) {
    const bundle = await activeBundle(config, pinned, opts.now ?? Date.now());
    if (bundle.refused !== undefined) warn(['policy', 'bundle_file'], bundle.refused);
    if (bundle.payload !== undefined) {
      const known = new Set(bundle.payload.assets.map((a) => a.id));
      const list = [...known].join(', ');
      for (const [key, upstreams] of [['upstreams', config.upstreams], ['opcua_upstreams', config.opcua_upstreams]] as const) {
        for (const [i, u] of upstreams.entries()) {
          if (!known.has(u.asset)) error([key, i, 'asset'], `asset '${u.asset}' is not in the bundle (revision ${bundle.payload.revision} of ${bundle.file}; its assets: ${list})`);
        }
      }
    } else {
      warn(['upstreams'], 'upstream assets not checked against a bundle: none verifies');
    }
  }

  // --- the other files serve opens ---
  if (config.audit.key_file !== undefined) {
    await loadEd25519PrivateKey(config.audit.key_file).catch((err: unknown) => error(['audit', 'key_file'], (err as Error).message));
  }
  for (const f of ['creds_file', 'nkey_seed_file'] as const) {
    const file = config.audit.nats?.[f];
    if (file !== undefined) await access(file, constants.R_OK).catch((err: unknown) => error(['audit', 'nats', f], `cannot read ${file}: ${(err as Error).message}`));
  }
  if (config.opcua !== undefined) {
    await keyPair(['opcua', 'cert'], ['opcua', 'key'], config.opcua.cert, config.opcua.key);
    for (const [i, t] of config.opcua.trusted_agent_certs.entries()) {
      if (typeof t === 'string') await certificates(['opcua', 'trusted_agent_certs', i], t);
      else await certificates(['opcua', 'trusted_agent_certs', i, 'cert'], t.cert);
    }
  }
  for (const [i, u] of config.opcua_upstreams.entries()) await certificates(['opcua_upstreams', i, 'server_cert'], u.server_cert);
  const source = config.policy.source;
  if (source !== undefined && 'url' in source && source.ca !== undefined) await certificates(['policy', 'source', 'ca'], source.ca);

  // --- directories serve creates and writes ---
  for (const [field, dir] of [[['state_dir'], config.state_dir], [['audit', 'spool_dir'], config.audit.spool_dir]] as const) {
    const why = await unwritableDirectory(dir);
    if (why !== undefined) error(field, why);
  }

  // --- listener addresses ---
  const listeners = listenerAddresses(config);
  for (const [i, l] of listeners.entries()) {
    const clash = listeners.slice(0, i).find((o) => o.port !== 0 && o.port === l.port && (o.host === l.host || isWildcard(o.host) || isWildcard(l.host)));
    if (clash !== undefined) error([...l.field, 'port'], `${l.host}:${l.port} is also the address of ${fieldName(clash.field)}`);
  }
  if (opts.ports === true) {
    for (const l of listeners) {
      if (l.port === 0) continue;
      const why = await bindProblem(l.host, l.port);
      if (why !== undefined) error([...l.field, 'port'], why);
    }
  }
  // The file checks run concurrently and finish in any order: errors are told in the order of the
  // file (warnings are found one after another, a cause before what it leaves unchecked).
  report.errors.sort((x, y) => x.line - y.line || x.column - y.column);
  return report;
}

function hasBlock(bytes: Buffer, label: string): boolean {
  return new RegExp(`-----BEGIN [A-Z0-9 ]*${label}-----`).test(bytes.toString('latin1'));
}

/** Every certificate of a PEM file (a chain or a CA bundle), or one DER certificate; else why not. */
export function parseCertificates(bytes: Buffer): X509Certificate[] | string {
  const text = bytes.toString('latin1');
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (blocks === null) {
    if (hasBlock(bytes, 'PRIVATE KEY')) return 'holds a private key, not a certificate';
    if (!text.includes('-----BEGIN')) {
      // OPC UA stores certificates as DER.
      try {
        return [new X509Certificate(bytes)];
      } catch {
        return 'not a PEM certificate';
      }
    }
    return 'no PEM certificate in it';
  }
  const out: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      out.push(new X509Certificate(block));
    } catch {
      return `certificate ${i + 1} does not parse`;
    }
  }
  return out;
}

/** The bundle serve would activate: the configured file, else its last-known-good copy. */
async function activeBundle(config: GatewayConfig, pinned: TrustedKey[], now: number): Promise<{ payload?: BundlePayload; file?: string; refused?: string }> {
  const lkg = path.join(config.state_dir, 'policy', 'bundle.lkg.jws');
  let refused: string | undefined;
  for (const file of [config.policy.bundle_file, lkg]) {
    try {
      return { payload: await verifyBundle(await readBundleFile(file), pinned, { now }), file, refused };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (file === lkg) {
        if (code !== 'ENOENT') refused = `${refused}; the last-known-good copy ${lkg} is refused too (${(err as Error).message.replace(/^BUNDLE_UNAVAILABLE: /, '')})`;
      } else {
        const why = code === 'ENOENT' ? 'not there' : `refused (${(err as Error).message.replace(/^BUNDLE_UNAVAILABLE: /, '')})`;
        const next = config.policy.source !== undefined ? 'until policy.source provides one, ' : '';
        refused = `${file} is ${why}: ${next}serve starts from the last-known-good bundle, or in safe mode (state-changing commands refused)`;
      }
    }
  }
  return { refused };
}

/** Why serve could not create or write this directory, or undefined. */
async function unwritableDirectory(dir: string): Promise<string | undefined> {
  for (let d = dir; ; d = path.dirname(d)) {
    const s = await stat(d).catch(() => undefined);
    if (s !== undefined) {
      if (!s.isDirectory()) return `${d} is not a directory`;
      const ok = await access(d, constants.W_OK | constants.X_OK).then(() => true, () => false);
      return ok ? undefined : `${d} is not writable`;
    }
    if (d === path.dirname(d)) return `${dir}: no existing parent directory`;
  }
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]';
}

/** Binds host:port exclusively and releases it: why it cannot be bound, or undefined. */
function bindProblem(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE' ? 'is in use' : err.code === 'EACCES' ? 'needs privileges to bind' : err.code === 'EADDRNOTAVAIL' ? 'is not an address of this machine' : `cannot be bound (${err.code ?? err.message})`;
      resolve(`${host}:${port} ${why}`);
    });
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}
