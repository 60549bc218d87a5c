// OPC UA application instance certificates for development, tests and the demo (OPC 10000-6 §6.2.2;
// `plantgate pki opcua`): RSA 2048 (Basic256Sha256 and Aes256_Sha256_RsaPss are RSA-only, unlike our
// ECDSA mTLS PKI), self-signed, key usages digitalSignature, nonRepudiation, keyEncipherment and
// dataEncipherment (node-opcua refuses a peer without the first and last), extended key usages
// serverAuth and clientAuth, and the applicationUri as the only URI SAN — for an agent, its SPIFFE
// ID (docs/opcua.md, "The applicationUri rule"); servers also carry their DNS names / addresses.
// Never for a plant: keys are written next to the certificates. Writes go through writeFileDurable.
// @peculiar/x509 needs a Reflect metadata polyfill (tsyringe); it must load before the library.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate, randomBytes, webcrypto } from 'node:crypto';
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MODBUS_ROLE_OID, certificateThumbprint } from '../../src/identity/cert.js';
import { parseSpiffeId } from '../../src/identity/spiffe.js';
import { PUBLIC_MODE, SECRET_MODE, writeFileDurable } from '../../src/identity/dev/files.js';

x509.cryptoProvider.set(webcrypto);

const ALG = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
const BACKDATE_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface AppCertOptions {
  applicationUri: string;
  commonName: string;
  /** DNS names / IP addresses the endpoint is reached at (servers). */
  hosts?: string[];
  validityDays?: number;
  now?: number;
  /**
   * A role for the agent, carried in the Modbus/TCP Security role extension (OID
   * 1.3.6.1.4.1.50316.802.1, one DER UTF8String): the gateway reads it from the application
   * certificate as it does from a Modbus/TCP Security client certificate and adds it to the
   * subject's roles (src/identity/cert.ts roleFromCertificate).
   */
  role?: string;
}

/** DER UTF8String of `text` (definite, minimal length: what roleFromCertificate insists on). */
function derUtf8String(text: string): Uint8Array {
  const body = Buffer.from(text, 'utf8');
  const len = body.length < 0x80 ? [body.length] : body.length < 0x100 ? [0x81, body.length] : [0x82, body.length >> 8, body.length & 0xff];
  return Uint8Array.from([0x0c, ...len, ...body]);
}

export interface AppCert {
  certPem: string;
  keyPem: string;
  /** DER of the certificate: what a peer's certificate manager trusts. */
  der: Buffer;
}

export async function createAppCert(opts: AppCertOptions): Promise<AppCert> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = opts.now ?? Date.now();
  const names: x509.JsonGeneralName[] = [{ type: 'url', value: opts.applicationUri }];
  for (const h of opts.hosts ?? []) names.push(/^[\d.]+$|:/.test(h) ? { type: 'ip', value: h } : { type: 'dns', value: h });
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(8).toString('hex').replace(/^[89a-f]/, '1'),
    name: `CN=${opts.commonName}, O=plantgate dev`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + (opts.validityDays ?? 365) * DAY_MS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.dataEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ...(opts.role === undefined ? [] : [new x509.Extension(MODBUS_ROLE_OID, false, derUtf8String(opts.role))]),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  return { certPem: cert.toString('pem') + '\n', keyPem, der: Buffer.from(cert.rawData) };
}

/** Writes `<name>.pem` and `<name>.key` under dir (key 0600) and returns their paths. */
export async function writeAppCert(dir: string, name: string, cert: AppCert): Promise<{ cert: string; key: string }> {
  await mkdir(dir, { recursive: true });
  const paths = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  await writeFileDurable(paths.cert, cert.certPem, PUBLIC_MODE);
  await writeFileDurable(paths.key, cert.keyPem, SECRET_MODE);
  return paths;
}

export class AppCertError extends Error {
  override readonly name = 'AppCertError';
}

export interface OpcuaPkiOptions {
  /** The gateway's applicationUri (its `opcua.application_uri`). */
  gatewayUri: string;
  /** DNS names / addresses the gateway's OPC UA front is reached at. */
  hosts: string[];
  /** Agents: name and SPIFFE ID (their applicationUri). */
  agents: { name: string; spiffeId: string; role?: string }[];
  /** OPC UA servers the gateway fronts (test PLCs, simulators): name and applicationUri. */
  servers: { name: string; applicationUri: string }[];
  validityDays?: number;
  /** Replace certificates already in `dir`. */
  overwrite?: boolean;
  now?: number;
}

export interface IssuedAppCert {
  cert: string;
  key: string;
  applicationUri: string;
  /** x5t#S256: what a token's cnf names, and what the audit shows. */
  thumbprint: string;
}

export interface OpcuaPkiPaths {
  gateway: IssuedAppCert;
  agents: Record<string, IssuedAppCert>;
  servers: Record<string, IssuedAppCert>;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * `plantgate pki opcua`: the gateway's application certificate, one per agent (applicationUri =
 * its SPIFFE ID) and one per fronted server, under `dir` (gateway.pem, agents/<name>.pem,
 * servers/<name>.pem, keys 0600). Refuses to replace existing ones unless `overwrite`.
 */
export async function issueOpcuaCerts(dir: string, o: OpcuaPkiOptions): Promise<OpcuaPkiPaths> {
  for (const a of o.agents) {
    if (!NAME_RE.test(a.name)) throw new AppCertError(`agent name '${a.name}' must match ${NAME_RE.source}`);
    // The agent's applicationUri is its workload identity: it must be a SPIFFE ID.
    const id = parseSpiffeId(a.spiffeId);
    if (typeof id === 'string') throw new AppCertError(`agent '${a.name}': '${a.spiffeId}' is not a SPIFFE ID (${id})`);
  }
  for (const v of o.servers) {
    if (!NAME_RE.test(v.name)) throw new AppCertError(`server name '${v.name}' must match ${NAME_RE.source}`);
    if (!/^[a-z][a-z0-9+.-]*:/i.test(v.applicationUri)) throw new AppCertError(`server '${v.name}': '${v.applicationUri}' is not a URI (urn:… or a URL)`);
  }
  if (!/^[a-z][a-z0-9+.-]*:/i.test(o.gatewayUri)) throw new AppCertError(`'${o.gatewayUri}' is not a URI (urn:… or a URL)`);
  const gatewayKey = join(dir, 'gateway.key');
  if (!o.overwrite && (await access(gatewayKey).then(() => true, () => false))) throw new AppCertError(`${gatewayKey} already exists; refusing to replace it (use overwrite)`);
  const common = { validityDays: o.validityDays ?? 365, ...(o.now !== undefined ? { now: o.now } : {}) };
  const issue = async (sub: string, name: string, opts: AppCertOptions): Promise<IssuedAppCert> => {
    const c = await createAppCert({ ...common, ...opts });
    const paths = await writeAppCert(sub, name, c);
    return { ...paths, applicationUri: opts.applicationUri, thumbprint: certificateThumbprint(new X509Certificate(c.der)) };
  };
  const out: OpcuaPkiPaths = {
    gateway: await issue(dir, 'gateway', { applicationUri: o.gatewayUri, commonName: 'plantgate gateway', hosts: o.hosts }),
    agents: {},
    servers: {},
  };
  for (const a of o.agents) out.agents[a.name] = await issue(join(dir, 'agents'), a.name, { applicationUri: a.spiffeId, commonName: a.name, ...(a.role ? { role: a.role } : {}) });
  for (const v of o.servers) out.servers[v.name] = await issue(join(dir, 'servers'), v.name, { applicationUri: v.applicationUri, commonName: v.name, hosts: o.hosts });
  return out;
}
