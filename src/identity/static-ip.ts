// Static source-address identities for the plaintext Modbus listener (docs/identity.md, "Legacy plaintext Modbus"): a labelled
// compensating control for legacy lab devices that cannot speak TLS. Off unless configured; every
// session it yields carries assurance `static-ip+token`, so every decision and audit record says so
// and policy can demand `mtls+token` instead. An address is not a proof of identity: this exists so
// a lab can be brought under audit, not as an equal to mutual TLS.
// Owns the config shape and the address → workload mapping. Never guesses: an address that is not
// listed exactly has no identity (NO_IDENTITY), and ranges are not supported on purpose.
import { isIP } from 'node:net';
import { z } from 'zod';
import type { Subject } from '../core/command.js';
import type { Session } from '../core/pipeline.js';
import { PlantgateError } from '../core/errors.js';
import type { TokenIntake } from './intake.js';
import type { TokenRegistry } from './registry.js';
import { parseSpiffeId } from './spiffe.js';

/**
 * Config shape, for `listeners.modbus_plain` in the gateway config (absent = off):
 *
 *   listeners:
 *     modbus_plain:
 *       host: 10.10.0.1
 *       port: 502
 *       identities:
 *         - address: 10.10.0.21
 *           workload: spiffe://plant.example/legacy/hmi-line1
 */
export const plaintextListenerSchema = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(0).max(65535),
  identities: z
    .array(
      z.strictObject({
        address: z.string().refine((a) => isIP(a) !== 0, 'must be a single IPv4 or IPv6 address (no ranges, no host names)'),
        workload: z.string().refine((w) => typeof parseSpiffeId(w) !== 'string', 'must be a SPIFFE ID (spiffe://trust-domain/path)'),
      }),
    )
    .min(1, 'a plaintext listener without identities would only ever deny: list at least one')
    .superRefine((list, ctx) => {
      const seen = new Map<string, number>();
      list.forEach((e, i) => {
        const a = normalizeAddress(e.address);
        const first = seen.get(a);
        if (first !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'address'], message: `address ${e.address} is already mapped by entry ${first}` });
        seen.set(a, i);
      });
    }),
});

export type PlaintextListenerConfig = z.output<typeof plaintextListenerSchema>;

export const STATIC_ASSURANCE = 'static-ip+token' as const;

/** `::ffff:10.0.0.5` (an IPv4 peer on a dual-stack socket) and `10.0.0.5` are the same peer. */
export function normalizeAddress(address: string): string {
  const a = address.toLowerCase();
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

export class StaticIdentityMap {
  private readonly byAddress: ReadonlyMap<string, string>;

  private constructor(byAddress: Map<string, string>) {
    this.byAddress = byAddress;
  }

  /** From an already validated config (plaintextListenerSchema). */
  static fromConfig(cfg: Pick<PlaintextListenerConfig, 'identities'>): StaticIdentityMap {
    const map = new Map<string, string>();
    for (const { address, workload } of cfg.identities) {
      const a = normalizeAddress(address);
      if (map.has(a)) throw new PlantgateError('NO_IDENTITY', `static identity address ${address} is mapped twice`);
      map.set(a, workload);
    }
    return new StaticIdentityMap(map);
  }

  /** The workload an exact source address stands for, or undefined. */
  lookup(remoteAddress: string): string | undefined {
    return this.byAddress.get(normalizeAddress(remoteAddress));
  }

  /**
   * The session of a plaintext connection from `remoteAddress` (host part only), or a
   * PlantgateError NO_IDENTITY for an unlisted address: the listener audits it and closes.
   */
  session(id: string, remoteAddress: string, remotePort: number | undefined): Session {
    const workloadId = this.lookup(remoteAddress);
    if (workloadId === undefined) {
      throw new PlantgateError('NO_IDENTITY', `source address ${remoteAddress} has no static identity on the plaintext listener`);
    }
    return {
      id,
      protocol: 'modbus',
      workloadId,
      // No certificate: tokens for this session must not carry cnf (verify.ts enforces it).
      certThumbprint: '',
      remoteAddress: `${remoteAddress}:${remotePort ?? ''}`,
      assurance: STATIC_ASSURANCE,
    };
  }

  /** Whether some listed address stands for this workload. */
  hasWorkload(workloadId: string): boolean {
    for (const w of this.byAddress.values()) if (w === workloadId) return true;
    return false;
  }

  get size(): number {
    return this.byAddress.size;
  }
}

export interface StaticTokenDeps {
  tokens: TokenRegistry;
  identities: StaticIdentityMap;
  /** Verifies, checks, records and binds the token (intake.ts). */
  intake: Pick<TokenIntake, 'register'>;
}

/**
 * Registers a token for a static (plaintext) identity. A static-IP device cannot reach the agent
 * API (it is mTLS-only), so an operator — or a privileged local process — presents the token on
 * its behalf. The token is verified like any other but for assurance `static-ip+token`: it must
 * NOT carry `cnf` (there is no certificate to bind to), its `sub` must be a workload listed on the
 * plaintext listener, and it is bound to "no certificate", so it can never serve an mTLS session
 * of that workload (TOKEN_BINDING_MISMATCH), nor an mTLS token a plaintext one.
 */
export async function registerStaticToken(deps: StaticTokenDeps, workloadId: string, jwt: string): Promise<Subject> {
  if (!deps.identities.hasWorkload(workloadId)) {
    throw new PlantgateError('NO_IDENTITY', `${workloadId} is not a static identity of the plaintext listener`);
  }
  return deps.intake.register(jwt, { workloadId, assurance: STATIC_ASSURANCE }, deps.tokens);
}
