// Guards for protocols/opcua/jwt-token.ts and front.ts: each test pins one behaviour of node-opcua
// (2.182.x) that our extension relies on or exists to fix. If an upgrade changes it, this fails
// first, and the extension must be re-checked (and perhaps deleted).
import {
  EndpointDescription,
  OPCUAServerEndPoint,
  ServerSecureChannelLayer,
  IssuedIdentityToken,
  OPCUAClient,
  OPCUAServer,
  ServerEngine,
  SessionContext,
  StatusCodes,
  Subscription,
  UserNameIdentityToken,
  UserTokenType,
  type StatusCode,
} from 'node-opcua';
import { describe, expect, it } from 'vitest';
import { JWT_ISSUED_TOKEN_TYPE, JWT_POLICY_ID, jwtUserTokenPolicy } from '../../../protocols/opcua/jwt-token.js';

const endpointWithJwt = () =>
  new EndpointDescription({ securityMode: 3, securityPolicyUri: 'http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256', userIdentityTokens: [jwtUserTokenPolicy()] });
const jwtToken = () => new IssuedIdentityToken({ policyId: JWT_POLICY_ID, tokenData: Buffer.from('not-a-jwt'), encryptionAlgorithm: null });

type Proto = Record<string, (...a: unknown[]) => unknown>;
const serverProto = OPCUAServer.prototype as unknown as Proto;

describe('node-opcua behaviour the JWT extension relies on', () => {
  it('the stock server accepts any IssuedIdentityToken unchecked once a policy exists (why JwtOPCUAServer overrides both checks)', async () => {
    const session = { getEndpointDescription: endpointWithJwt };
    const valid = await new Promise<StatusCode | undefined>((resolve) =>
      serverProto.isValidUserIdentityToken!.call({}, {}, session, jwtToken(), {}, endpointWithJwt(), (_e: unknown, s?: StatusCode) => resolve(s)),
    );
    expect(valid).toBe(StatusCodes.Good);
    const authorized = await new Promise<boolean | undefined>((resolve) =>
      serverProto.isUserAuthorized!.call({}, {}, session, jwtToken(), (_e: unknown, ok?: boolean) => resolve(ok)),
    );
    expect(authorized).toBe(true);
  });

  it('the role lookup throws on an IssuedIdentityToken session, and works on the stand-in token we present', () => {
    const server = { userManager: { getUserRoles: () => [] } };
    const issued = new SessionContext({ session: { userIdentityToken: jwtToken() } as never, server: server as never });
    expect(() => issued.getCurrentUserRoles()).toThrow();
    // What presentAsWorkload puts in its place.
    const stand = new SessionContext({
      session: { userIdentityToken: new UserNameIdentityToken({ policyId: JWT_POLICY_ID, userName: 'spiffe://x/y', password: Buffer.alloc(0) }) } as never,
      server: server as never,
    });
    expect(() => stand.getCurrentUserRoles()).not.toThrow();
  });

  it('the hooks we override or wrap still exist with the shapes we call', () => {
    for (const m of ['isValidUserIdentityToken', 'isUserAuthorized', '_on_CreateMonitoredItemsRequest', 'initialize']) expect(typeof serverProto[m]).toBe('function');
    expect(serverProto.isValidUserIdentityToken!.length).toBe(6);
    expect(serverProto.isUserAuthorized!.length).toBe(4);
    const engine = ServerEngine.prototype as unknown as Proto;
    for (const m of ['read', 'write', 'call', 'browse']) expect(typeof engine[m]).toBe('function');
    expect(typeof (Subscription.prototype as unknown as Proto).preCreateMonitoredItem).toBe('function');
  });

  it("an endpoint pre-registers each new channel, whose certificate check is an instance method it calls on itself (the front's certificate watch)", () => {
    expect(typeof (OPCUAServerEndPoint.prototype as unknown as Proto)._preregisterChannel).toBe('function');
    const check = (ServerSecureChannelLayer.prototype as unknown as Proto).checkCertificate!;
    expect(typeof check).toBe('function');
    // Called as `this.checkCertificate(clientCertificate)`: a per-instance property replaces it.
    const source = Function.prototype.toString.call(ServerSecureChannelLayer);
    expect(source).toContain('this.checkCertificate(clientCertificate)');
  });

  it('the stock client cannot build an IssuedIdentityToken, and exposes the per-instance hook we extend', async () => {
    const client = OPCUAClient.create({ endpointMustExist: false });
    const create = (client as unknown as Proto).createUserIdentityToken;
    expect(typeof create).toBe('function');
    const ctx = { endpoint: endpointWithJwt(), securityPolicy: 'http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256', serverCertificate: Buffer.alloc(0), serverNonce: Buffer.alloc(32) };
    const err = await new Promise<unknown>((resolve) => create!.call(client, ctx, { type: UserTokenType.IssuedToken, tokenData: 'x' }, (e: unknown) => resolve(e)));
    expect(err).toBeInstanceOf(Error);
    expect(JWT_ISSUED_TOKEN_TYPE).toBe('http://opcfoundation.org/UA/UserToken#JWT');
  });
});
