// The one module that extends node-opcua (issue 4): JWT user tokens on both sides of a session.
//
// node-opcua 2.182 (verified by test/unit/opcua/node-opcua-guard.test.ts, which fails if an
// upgrade changes any of this):
//  - its server never advertises an IssuedToken user token policy, and once one exists it accepts
//    any IssuedIdentityToken unchecked (`isValidUserIdentityToken` / `isUserAuthorized` fall through
//    to Good / authorized);
//  - its role lookup (`SessionContext.getCurrentUserRoles` → `getUserName`) throws on an
//    IssuedIdentityToken, so a JWT session would crash the first Read;
//  - its client cannot build an IssuedIdentityToken (`createUserIdentityToken` knows Anonymous,
//    UserName and Certificate only).
// Server side, JwtOPCUAServer advertises exactly one user token policy (JWT, OPC 10000-4 §7.41.6
// issuedTokenType http://opcfoundation.org/UA/UserToken#JWT), refuses every other token type
// (anonymous included), decrypts the token with the channel's key and checks the server-nonce
// binding like a password, and hands the JWT to a verifier callback together with the identity
// of the client's application certificate. Client side, `createJwtSession` / `rotateJwt` teach one
// client instance to send the JWT as an IssuedIdentityToken, encrypted to the server certificate.
// For clients that cannot send an IssuedIdentityToken (open62541's CLI, many SCADA/HMI tools), the
// server may also advertise a UserName policy whose password is the JWT (`passwordToken`): the
// password must arrive encrypted to the server certificate with the server nonce (OPC 10000-4
// §7.41.2.2), or in clear only inside a SignAndEncrypt channel; it is then verified exactly like
// the IssuedIdentityToken's JWT. The user name is not used (the certificate and the token say who).
// This module never logs or keeps a token: the JWT lives only until its verifier returns.
import { X509Certificate, createPublicKey } from 'node:crypto';
import {
  IssuedIdentityToken,
  MessageSecurityMode,
  OPCUAServer,
  SecurityPolicy,
  StatusCodes,
  UserNameIdentityToken,
  UserTokenPolicy,
  UserTokenType,
  asymmetricDecryptWithKeyOps,
  fromURI,
  getCryptoFactory,
  type ClientSession,
  type EndpointDescription,
  type OPCUAClient,
  type OPCUAServerOptions,
  type ServerSession,
  type SignatureData,
  type StatusCode,
  type UserIdentityInfo,
  type UserIdentityToken,
} from 'node-opcua';
import type { Subject } from '../../src/core/command.js';
import { PlantgateError } from '../../src/core/errors.js';
import type { Reason } from '../../src/core/reasons.js';
import { identityFromCertificate, type CertificateIdentity } from '../../src/identity/cert.js';

export const JWT_ISSUED_TOKEN_TYPE = 'http://opcfoundation.org/UA/UserToken#JWT';
export const JWT_POLICY_ID = 'plantgate-jwt';
/** The UserName policy whose password is the JWT (advertised only when the server is told to). */
export const JWT_PASSWORD_POLICY_ID = 'plantgate-jwt-password';
/** Same bound as src/identity/verify.ts MAX_TOKEN_LENGTH, plus the nonce and framing. */
const MAX_TOKEN_DATA = 16 * 1024;

/** What the server knows of the client when it asks for a JWT to be verified. */
export interface JwtPresentation {
  /** SPIFFE ID from the URI SAN of the client's application instance certificate. */
  workloadId: string;
  /** x5t#S256 of that certificate: the token's `cnf` must name it. */
  certThumbprint: string;
  remoteAddress: string;
  /**
   * The Modbus/TCP Security role extension of that certificate, when it carries one: the verifier
   * joins it to the token's roles (verifyAccessToken `certRole`), as the agent API does for Modbus.
   */
  certRole?: string;
}

/** Resolves with the verified Subject, or rejects; a PlantgateError (TokenError) names the reason. */
export type JwtVerifier = (jwt: string, who: JwtPresentation) => Promise<Subject>;

/** The identity a JWT session currently runs under; replaced on each successful re-activation. */
export interface JwtSessionIdentity extends JwtPresentation {
  subject: Subject;
}

export interface JwtServerHooks {
  verify: JwtVerifier;
  /** Also accept the JWT as the password of a UserNameIdentityToken (encrypted, or on SignAndEncrypt). */
  passwordToken?: boolean;
  /**
   * The workload a client application certificate proves (docs/opcua.md, "The applicationUri
   * rule"); default: its only URI SAN, which must be a SPIFFE ID. Throws (NO_IDENTITY) when none.
   */
  identify?: (cert: X509Certificate) => CertificateIdentity;
  /** After a successful ActivateSession; `rotated` when the session already had an identity. */
  onActivated?: (session: ServerSession, identity: JwtSessionIdentity, rotated: boolean) => void;
  /** An ActivateSession refused: which reason, and a message fit for the audit (never the token). */
  onRejected?: (session: ServerSession, reason: Reason, message: string, who?: JwtPresentation) => void;
}

const identities = new WeakMap<ServerSession, JwtSessionIdentity>();
/** The decrypted JWT between the two activation steps node-opcua runs; deleted as soon as it is read. */
const pending = new WeakMap<UserIdentityToken, string>();
const patchedSessions = new WeakSet<ServerSession>();
const stands = new WeakMap<ServerSession, UserIdentityToken>();

/** The identity of an activated JWT session, or undefined (never activated, or not ours). */
export function jwtSessionIdentity(session: ServerSession | undefined | null): JwtSessionIdentity | undefined {
  return session ? identities.get(session) : undefined;
}

/** The reason a verifier's error carries (PlantgateError.reason); anything else is TOKEN_INVALID.
 * BUNDLE_UNAVAILABLE: no bundle, so no trusted issuers to verify against. */
function reasonOf(err: unknown): Reason {
  const r = err instanceof PlantgateError ? err.reason : undefined;
  return r === 'TOKEN_EXPIRED' || r === 'TOKEN_BINDING_MISMATCH' || r === 'TOKEN_REVOKED' || r === 'NO_IDENTITY' || r === 'BUNDLE_UNAVAILABLE' ? r : 'TOKEN_INVALID';
}

/** The one user token policy a JWT endpoint offers; securityPolicyUri null = the channel's policy. */
export function jwtUserTokenPolicy(): UserTokenPolicy {
  return new UserTokenPolicy({
    policyId: JWT_POLICY_ID,
    tokenType: UserTokenType.IssuedToken,
    issuedTokenType: JWT_ISSUED_TOKEN_TYPE,
    issuerEndpointUrl: null,
    securityPolicyUri: null,
  });
}

/**
 * The role lookup of node-opcua names the user from the session's token and throws on an
 * IssuedIdentityToken. The session is made to present a password-less UserNameIdentityToken named
 * after the workload instead; the real token (and its JWT) is not kept. A side effect we accept:
 * moving the session to another secure channel compares tokens and is refused
 * (BadIdentityChangeNotSupported); the client then opens a new session with a fresh token.
 */
function presentAsWorkload(session: ServerSession, workloadId: string): void {
  stands.set(session, new UserNameIdentityToken({ policyId: JWT_POLICY_ID, userName: workloadId, password: Buffer.alloc(0), encryptionAlgorithm: null }));
  if (patchedSessions.has(session)) return;
  patchedSessions.add(session);
  // node-opcua assigns the request's IssuedIdentityToken right after authorization: ignored, the
  // stand-in stays.
  Object.defineProperty(session, 'userIdentityToken', {
    configurable: true,
    enumerable: true,
    get: () => stands.get(session),
    set: () => undefined,
  });
}

export interface JwtOPCUAServerOptions extends OPCUAServerOptions {
  jwt: JwtServerHooks;
}

/**
 * An OPCUAServer whose only user identity is a JWT. Anonymous, user name and X.509 user tokens
 * are refused (BadIdentityTokenRejected); a JWT that does not verify is refused the same way, and
 * the reason goes to `onRejected`.
 */
export class JwtOPCUAServer extends OPCUAServer {
  private readonly jwtHooks: JwtServerHooks;

  constructor(options: JwtOPCUAServerOptions) {
    const { jwt, ...rest } = options;
    // No anonymous policy anywhere, not even on the discovery endpoint.
    super({ ...rest, allowAnonymous: false });
    this.jwtHooks = jwt;
  }

  override async initialize(): Promise<void>;
  override initialize(done: () => void): void;
  override initialize(done?: () => void): Promise<void> | void {
    const p = super.initialize().then(() => advertiseJwtPolicy(this, this.jwtHooks.passwordToken === true));
    if (done === undefined) return p;
    p.then(done, done);
  }

  protected override isValidUserIdentityToken(
    channel: Parameters<OPCUAServer['isValidUserIdentityToken']>[0],
    session: ServerSession,
    token: UserIdentityToken,
    _signature: SignatureData,
    endpoint: EndpointDescription,
    callback: (err: Error | null, statusCode?: StatusCode) => void,
  ): void {
    const refuse = (status: StatusCode, message: string): void => {
      this.jwtHooks.onRejected?.(session, 'NO_TOKEN', message);
      callback(null, status);
    };
    if (token instanceof UserNameIdentityToken && this.jwtHooks.passwordToken === true && token.policyId === JWT_PASSWORD_POLICY_ID) {
      this.passwordJwt(channel, session, token, endpoint, refuse, callback);
      return;
    }
    if (!(token instanceof IssuedIdentityToken)) {
      refuse(
        StatusCodes.BadIdentityTokenRejected,
        `user token ${token?.constructor?.name ?? 'none'} refused: only a JWT ${this.jwtHooks.passwordToken === true ? 'IssuedIdentityToken or UserName password' : 'IssuedIdentityToken'} is accepted`,
      );
      return;
    }
    const policy = endpoint.userIdentityTokens?.find((p) => p.policyId === token.policyId);
    if (token.policyId !== JWT_POLICY_ID || policy === undefined || policy.issuedTokenType !== JWT_ISSUED_TOKEN_TYPE) {
      refuse(StatusCodes.BadIdentityTokenInvalid, `issued token policy "${String(token.policyId)}" is not the JWT policy`);
      return;
    }
    const data = token.tokenData;
    if (!Buffer.isBuffer(data) || data.length === 0 || data.length > MAX_TOKEN_DATA) {
      refuse(StatusCodes.BadIdentityTokenInvalid, 'issued token carries no data or more than the maximum');
      return;
    }
    this.decryptTokenData(channel, session, token, data).then(
      (jwt) => {
        if (jwt === undefined) {
          refuse(StatusCodes.BadIdentityTokenInvalid, 'issued token data is not encrypted to this server and bound to its nonce');
          return;
        }
        pending.set(token, jwt);
        callback(null, StatusCodes.Good);
      },
      () => refuse(StatusCodes.BadIdentityTokenInvalid, 'issued token data cannot be decrypted'),
    );
  }

  /** The JWT as a UserName password: same decryption and nonce binding as an IssuedIdentityToken's data. */
  private passwordJwt(
    channel: Parameters<OPCUAServer['isValidUserIdentityToken']>[0],
    session: ServerSession,
    token: UserNameIdentityToken,
    endpoint: EndpointDescription,
    refuse: (status: StatusCode, message: string) => void,
    callback: (err: Error | null, statusCode?: StatusCode) => void,
  ): void {
    const policy = endpoint.userIdentityTokens?.find((p) => p.policyId === token.policyId && p.tokenType === UserTokenType.UserName);
    const data = token.password;
    if (policy === undefined) {
      refuse(StatusCodes.BadIdentityTokenInvalid, 'this endpoint offers no JWT password policy');
      return;
    }
    if (!Buffer.isBuffer(data) || data.length === 0 || data.length > MAX_TOKEN_DATA) {
      refuse(StatusCodes.BadIdentityTokenInvalid, 'the password carries no JWT or more than the maximum');
      return;
    }
    this.decryptTokenData(channel, session, token, data).then(
      (jwt) => {
        if (jwt === undefined) {
          // A JWT in clear outside an encrypted channel would be readable on the wire: never accepted.
          refuse(StatusCodes.BadIdentityTokenInvalid, 'the JWT password is neither encrypted to this server and bound to its nonce nor inside a SignAndEncrypt channel');
          return;
        }
        pending.set(token, jwt);
        callback(null, StatusCodes.Good);
      },
      () => refuse(StatusCodes.BadIdentityTokenInvalid, 'the JWT password cannot be decrypted'),
    );
  }

  /**
   * OPC 10000-4 §7.41.6: tokenData is encrypted like a password (length ‖ token ‖ serverNonce,
   * asymmetric with the server certificate) unless encryptionAlgorithm is null. Unencrypted is
   * only accepted on a SignAndEncrypt channel, where the channel already hides it.
   */
  private async decryptTokenData(channel: Parameters<OPCUAServer['isValidUserIdentityToken']>[0], session: ServerSession, token: IssuedIdentityToken | UserNameIdentityToken, data: Buffer): Promise<string | undefined> {
    const policy = channel.securityPolicy as SecurityPolicy;
    if (token.encryptionAlgorithm === null || token.encryptionAlgorithm === undefined || token.encryptionAlgorithm === '') {
      return channel.securityMode === MessageSecurityMode.SignAndEncrypt ? data.toString('utf8') : undefined;
    }
    const factory = policy === SecurityPolicy.None ? undefined : getCryptoFactory(policy);
    if (factory === undefined || factory === null || token.encryptionAlgorithm !== factory.asymmetricEncryptionAlgorithm) return undefined;
    const nonce = session.nonce;
    if (!nonce) return undefined;
    const plain = await asymmetricDecryptWithKeyOps(factory, data, channel.getKeyOperations());
    if (plain.length < 4) return undefined;
    const total = plain.readUInt32LE(0);
    const len = total - nonce.length;
    if (len <= 0 || 4 + total > plain.length) return undefined;
    if (!plain.subarray(4 + len, 4 + total).equals(nonce)) return undefined;
    return plain.subarray(4, 4 + len).toString('utf8');
  }

  protected override isUserAuthorized(
    channel: Parameters<OPCUAServer['isUserAuthorized']>[0],
    session: ServerSession,
    token: UserIdentityToken,
    callback: (err: Error | null, isAuthorized?: boolean, statusCode?: StatusCode) => void,
  ): void {
    const jwt = pending.get(token);
    pending.delete(token);
    const reject = (reason: Reason, message: string, who?: JwtPresentation): void => {
      this.jwtHooks.onRejected?.(session, reason, message, who);
      callback(null, false, StatusCodes.BadIdentityTokenRejected);
    };
    if (jwt === undefined) {
      reject('NO_TOKEN', 'no verified-format JWT on this activation');
      return;
    }
    let who: JwtPresentation;
    try {
      const der = channel.clientCertificate;
      if (!der) throw new Error('no client certificate on the secure channel');
      const id = (this.jwtHooks.identify ?? identityFromCertificate)(new X509Certificate(der));
      who = { workloadId: id.workloadId, certThumbprint: id.thumbprint, remoteAddress: channel.remoteAddress ?? '' };
      // A role extension that cannot be read made identityFromCertificate throw (NO_IDENTITY).
      if (id.role !== undefined) who.certRole = id.role;
    } catch (err) {
      reject('NO_IDENTITY', `client application certificate carries no usable workload identity: ${(err as Error).message}`);
      return;
    }
    let verifying: Promise<Subject>;
    try {
      verifying = this.jwtHooks.verify(jwt, who);
    } catch (err) {
      verifying = Promise.reject(err);
    }
    verifying.then(
      (subject) => {
        const rotated = identities.has(session);
        const identity: JwtSessionIdentity = { ...who, subject };
        identities.set(session, identity);
        presentAsWorkload(session, who.workloadId);
        this.jwtHooks.onActivated?.(session, identity, rotated);
        callback(null, true);
      },
      (err: unknown) => reject(reasonOf(err), (err as Error)?.message ?? 'token refused', who),
    );
  }
}

/**
 * The UserName policy whose password is the JWT, on an endpoint of `securityPolicyUri`: the client
 * encrypts the password with that (the endpoint's own) policy, so it never travels in clear.
 */
export function jwtPasswordTokenPolicy(securityPolicyUri: string): UserTokenPolicy {
  return new UserTokenPolicy({ policyId: JWT_PASSWORD_POLICY_ID, tokenType: UserTokenType.UserName, issuedTokenType: null, issuerEndpointUrl: null, securityPolicyUri });
}

/** Replaces every endpoint's user token policies with the JWT policy (and the JWT password policy when asked). */
export function advertiseJwtPolicy(server: OPCUAServer, password = false): void {
  for (const ep of server.endpoints) {
    for (const desc of ep.endpointDescriptions()) {
      const secure = desc.securityMode !== MessageSecurityMode.None && desc.securityPolicyUri !== SecurityPolicy.None;
      desc.userIdentityTokens = password && secure ? [jwtUserTokenPolicy(), jwtPasswordTokenPolicy(desc.securityPolicyUri!)] : [jwtUserTokenPolicy()];
    }
  }
}

// ---------------------------------------------------------------- client side

interface IdentityTokenContext {
  endpoint: EndpointDescription;
  securityPolicy: SecurityPolicy;
  serverCertificate: Buffer;
  serverNonce: Buffer;
}
interface JwtIdentityInfo {
  type: UserTokenType.IssuedToken;
  tokenData: string;
}
type CreateToken = (ctx: IdentityTokenContext, info: UserIdentityInfo | JwtIdentityInfo, cb: (err: Error | null, data?: unknown) => void) => void;
const patchedClients = new WeakSet<object>();

/** Builds the IssuedIdentityToken for `jwt` against the endpoint the session was created on. */
export function buildJwtIdentityToken(ctx: IdentityTokenContext, jwt: string): IssuedIdentityToken {
  const policy = ctx.endpoint.userIdentityTokens?.find((p) => p.tokenType === UserTokenType.IssuedToken && p.issuedTokenType === JWT_ISSUED_TOKEN_TYPE);
  if (policy === undefined) throw new Error('server endpoint offers no JWT user token policy');
  let securityPolicy = fromURI(policy.securityPolicyUri);
  if (securityPolicy === SecurityPolicy.Invalid) securityPolicy = ctx.securityPolicy;
  const factory = securityPolicy === SecurityPolicy.None ? undefined : getCryptoFactory(securityPolicy);
  if (!factory || !ctx.serverCertificate || ctx.serverCertificate.length === 0) {
    // Never send a JWT in clear on a channel that is not encrypted.
    throw new Error('refusing to send a JWT without an encrypting security policy and a server certificate');
  }
  const body = Buffer.from(jwt, 'utf8');
  const nonce = ctx.serverNonce ?? Buffer.alloc(0);
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32LE(body.length + nonce.length, 0);
  const publicKey = createPublicKey(new X509Certificate(ctx.serverCertificate).publicKey.export({ type: 'spki', format: 'pem' }));
  return new IssuedIdentityToken({
    policyId: policy.policyId,
    tokenData: factory.asymmetricEncrypt(Buffer.concat([len, body, nonce]), publicKey),
    encryptionAlgorithm: factory.asymmetricEncryptionAlgorithm,
  });
}

/** Teaches this one client instance to activate sessions with `{ type: IssuedToken, tokenData: jwt }`. */
export function enableJwtIdentity(client: OPCUAClient): void {
  if (patchedClients.has(client)) return;
  const target = client as unknown as { createUserIdentityToken?: CreateToken };
  const original = target.createUserIdentityToken;
  if (typeof original !== 'function') throw new Error('node-opcua client has no createUserIdentityToken: upgrade broke the JWT extension');
  target.createUserIdentityToken = function (this: unknown, ctx, info, cb) {
    if (info !== null && typeof info === 'object' && info.type === UserTokenType.IssuedToken) {
      try {
        const token = buildJwtIdentityToken(ctx, (info as JwtIdentityInfo).tokenData);
        cb(null, { userIdentityToken: token, userTokenSignature: { algorithm: undefined, signature: undefined } });
      } catch (err) {
        cb(err as Error);
      }
      return;
    }
    original.call(this, ctx, info, cb);
  };
  patchedClients.add(client);
}

function jwtIdentity(jwt: string): UserIdentityInfo {
  return { type: UserTokenType.IssuedToken, tokenData: jwt } as unknown as UserIdentityInfo;
}

/** Opens a session on a connected client, activated with the JWT as an IssuedIdentityToken. */
export async function createJwtSession(client: OPCUAClient, jwt: string): Promise<ClientSession> {
  enableJwtIdentity(client);
  return client.createSession(jwtIdentity(jwt));
}

/**
 * Re-activates the session with a fresh JWT (rotation without reconnecting). Resolves with the
 * server's answer: Good, or BadUserAccessDenied when the server refused the new token (the
 * session then keeps its previous identity until that token expires).
 */
export async function rotateJwt(session: ClientSession, jwt: string): Promise<StatusCode> {
  return session.changeUser(jwtIdentity(jwt));
}
