// Development PKI for `plantgate pki init`, tests and the demo: one ECDSA P-256 CA that issues the
// gateway and collector server certificates and one client certificate (X509-SVID) per agent.
// Never for a plant: the CA key sits on disk next to the certificates it signs.
// @peculiar/x509 needs a Reflect metadata polyfill (tsyringe); it must load before the library.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto, randomBytes } from 'node:crypto';
import { access } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { MODBUS_ROLE_OID } from '../cert.js';
import { parseSpiffeId } from '../spiffe.js';
import { PUBLIC_MODE, SECRET_MODE, writeFileDurable } from './files.js';

x509.cryptoProvider.set(webcrypto);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
// Validity starts a little in the past so a gateway whose clock lags the CA's does not reject
// freshly issued certificates.
const BACKDATE_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export interface PkiAgent {
  name: string;
  spiffeId: string;
}

export interface InitPkiOptions {
  agents: PkiAgent[];
  /** DNS names and IP addresses for the gateway and collector server certificates. */
  gatewayHosts?: string[];
  trustDomain?: string;
  validityDays?: number;
  /** Replace an existing CA in `dir`; without it an existing ca.key is an error. */
  overwrite?: boolean;
  /** Issue time, ms since the epoch (default: now). */
  now?: number;
}

export interface CertKeyPaths {
  cert: string;
  key: string;
}

export interface PkiPaths {
  dir: string;
  ca: CertKeyPaths;
  gateway: CertKeyPaths & { spiffeId: string };
  collector: CertKeyPaths & { spiffeId: string };
  agents: Record<string, CertKeyPaths & { spiffeId: string }>;
}

export class PkiError extends Error {
  override readonly name = 'PkiError';
}

function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] &= 0x7f; // positive INTEGER (RFC 5280 §4.1.2.2)
  if (bytes[0] === 0) bytes[0] = 1;
  return bytes.toString('hex');
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').trimEnd();
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

async function newKeys(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
}

function hostNames(hosts: string[]): x509.JsonGeneralName[] {
  return hosts.map((h) => ({ type: isIP(h) ? 'ip' : 'dns', value: h }) as x509.JsonGeneralName);
}

interface Issuer {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

async function issueLeaf(
  issuer: Issuer,
  cn: string,
  names: x509.JsonGeneralName[],
  usages: x509.ExtendedKeyUsage[],
  notBefore: Date,
  notAfter: Date,
): Promise<{ cert: x509.X509Certificate; keys: CryptoKeyPair }> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${cn}, O=plantgate dev`,
    issuer: issuer.cert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(usages, false),
      // X509-SVID §4: the SAN carries the identity; the subject DN is informational only.
      new x509.SubjectAlternativeNameExtension(names, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey),
    ],
  });
  return { cert, keys };
}

async function writePair(dir: string, base: string, cert: x509.X509Certificate, key: CryptoKey): Promise<CertKeyPaths> {
  const paths = { cert: join(dir, `${base}.crt`), key: join(dir, `${base}.key`) };
  await writeFileDurable(paths.key, await privateKeyPem(key), SECRET_MODE);
  await writeFileDurable(paths.cert, cert.toString('pem') + '\n', PUBLIC_MODE);
  return paths;
}

function validate(opts: InitPkiOptions, trustDomain: string): void {
  const td = parseSpiffeId(`spiffe://${trustDomain}`);
  if (typeof td === 'string') throw new PkiError(`trust domain "${trustDomain}": ${td}`);
  const seen = new Set<string>();
  for (const agent of opts.agents) {
    if (!NAME_RE.test(agent.name)) {
      throw new PkiError(`agent name "${agent.name}" may contain only letters, digits, ".", "-" and "_" (it becomes a file name)`);
    }
    if (seen.has(agent.name)) throw new PkiError(`agent "${agent.name}" is listed twice`);
    seen.add(agent.name);
    const parsed = parseSpiffeId(agent.spiffeId);
    if (typeof parsed === 'string') throw new PkiError(`agent "${agent.name}": "${agent.spiffeId}" is not a SPIFFE ID: ${parsed}`);
    if (parsed.path === '') throw new PkiError(`agent "${agent.name}": a workload SPIFFE ID needs a path, not just the trust domain`);
  }
  const days = opts.validityDays ?? 365;
  if (!Number.isInteger(days) || days <= 0) throw new PkiError(`validityDays must be a positive integer, got ${days}`);
}

/** Writes the CA, gateway, collector and agent certificates and keys under `dir` (keys 0600). */
export async function initPki(dir: string, opts: InitPkiOptions): Promise<PkiPaths> {
  const trustDomain = opts.trustDomain ?? 'plant.example';
  validate(opts, trustDomain);
  if (!opts.overwrite) {
    const exists = await access(join(dir, 'ca.key')).then(() => true, () => false);
    if (exists) {
      throw new PkiError(
        `${join(dir, 'ca.key')} already exists; refusing to replace a CA (--force replaces it, and every certificate it signed stops being trusted; to add an agent under it: plantgate pki issue --dir ${dir} --agent NAME=SPIFFE_ID)`,
      );
    }
  }
  const now = opts.now ?? Date.now();
  const notBefore = new Date(now - BACKDATE_MS);
  const notAfter = new Date(now + (opts.validityDays ?? 365) * DAY_MS);
  const hosts = opts.gatewayHosts ?? ['localhost', '127.0.0.1'];

  const caKeys = await newKeys();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=plantgate dev CA (${trustDomain}), O=plantgate dev`,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const ca: Issuer = { cert: caCert, keys: caKeys };
  const caPaths = await writePair(dir, 'ca', caCert, caKeys.privateKey);

  const serverUsages = [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth];
  const gatewayId = `spiffe://${trustDomain}/gateway`;
  const gw = await issueLeaf(ca, 'plantgate gateway', [...hostNames(hosts), { type: 'url', value: gatewayId }], serverUsages, notBefore, notAfter);
  const gatewayPaths = await writePair(dir, 'gateway', gw.cert, gw.keys.privateKey);

  const collectorId = `spiffe://${trustDomain}/collector`;
  const col = await issueLeaf(ca, 'plantgate collector', [...hostNames(hosts), { type: 'url', value: collectorId }], serverUsages, notBefore, notAfter);
  const collectorPaths = await writePair(dir, 'collector', col.cert, col.keys.privateKey);

  const agents: PkiPaths['agents'] = {};
  for (const agent of opts.agents) {
    const leaf = await issueLeaf(ca, agent.name, [{ type: 'url', value: agent.spiffeId }], [x509.ExtendedKeyUsage.clientAuth], notBefore, notAfter);
    agents[agent.name] = { ...(await writePair(join(dir, 'agents'), agent.name, leaf.cert, leaf.keys.privateKey)), spiffeId: agent.spiffeId };
  }

  return {
    dir,
    ca: caPaths,
    gateway: { ...gatewayPaths, spiffeId: gatewayId },
    collector: { ...collectorPaths, spiffeId: collectorId },
    agents,
  };
}

export interface ClientCertificateOptions {
  /** File base name under `<pki dir>/agents/`. */
  name: string;
  /** URI SANs to put in the certificate: none (no identity), one SPIFFE ID, or several (invalid SVID). */
  uris: string[];
  notBefore: Date;
  notAfter: Date;
  /** Modbus/TCP Security role (extension 1.3.6.1.4.1.50316.802.1, a UTF8String); absent: none. */
  role?: string;
  /** Raw DER for the role extension's value instead of `role` (malformed-extension tests). */
  roleDer?: Uint8Array;
}

/** DER UTF8String (tag 0x0c, definite length). */
function encodeUtf8String(text: string): Uint8Array {
  const body = Buffer.from(text, 'utf8');
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([0x0c, ...len]), body]);
}

async function loadIssuer(pki: PkiPaths): Promise<Issuer> {
  const { readFile } = await import('node:fs/promises');
  const [certPem, keyPem] = await Promise.all([readFile(pki.ca.cert, 'utf8'), readFile(pki.ca.key, 'utf8')]);
  const cert = new x509.X509Certificate(certPem);
  const der = Buffer.from(keyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, ALG, true, ['sign']);
  const publicKey = await cert.publicKey.export(ALG, ['verify']);
  return { cert, keys: { privateKey, publicKey } };
}

/**
 * Issues one more client certificate from an existing development CA, with any URI SANs and
 * validity: the certificates the identity attack matrix needs (expired, no SPIFFE ID, two IDs).
 */
export async function issueClientCertificate(pki: PkiPaths, opts: ClientCertificateOptions): Promise<CertKeyPaths> {
  if (!NAME_RE.test(opts.name)) throw new PkiError(`certificate name "${opts.name}" may contain only letters, digits, ".", "-" and "_"`);
  const issuer = await loadIssuer(pki);
  const names: x509.JsonGeneralName[] = opts.uris.map((value) => ({ type: 'url', value }));
  // A certificate without any SAN is still a certificate: the extension is simply left out.
  const keys = await newKeys();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const roleValue = opts.roleDer ?? (opts.role !== undefined ? encodeUtf8String(opts.role) : undefined);
  if (roleValue !== undefined) extensions.push(new x509.Extension(MODBUS_ROLE_OID, false, roleValue));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${opts.name}, O=plantgate dev`,
    issuer: issuer.cert.subject,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    extensions,
  });
  return writePair(join(pki.dir, 'agents'), opts.name, cert, keys.privateKey);
}
