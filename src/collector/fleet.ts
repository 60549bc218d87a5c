// A fleet of collectors sharing one stream's gateways without an operator (docs/audit.md, Fleets):
// each gateway is read by the collector holding its lease, a key in a JetStream key-value bucket
// whose entries expire when not renewed (the bucket's max age), so a collector that dies lets its
// gateways go and the others take them. The verification state a gateway is stored up to (chain
// head, tree frontier, last checkpoint: state.ts's JSON) is put to a second bucket after every
// fsync and before the bus is acknowledged, so the collector taking a gateway over goes on from
// exactly there. Every state write is conditional on the revision its writer last saw: a taker
// writes the state back once before it reads a message (a fence), so a former holder that did not
// notice it lost the lease (paused, cut off) fails its next write and lets the gateway go without
// acknowledging anything more. Members announce themselves in the lease bucket too (same expiry),
// and a member takes no more than its share of the gateways (gateways ÷ members, rounded up): one
// holding more than that gives one back each round, stored and acknowledged first, for a member
// with fewer to take. Owns the two buckets; never touches the collector's files.
import { hostname } from 'node:os';
import type { JetStreamClient, KV } from 'nats';
import type { Logger } from '../core/log.js';
import { parseState, stateJson, type GatewayState } from './state.js';

/** What a fleet member uses where its config says nothing (the collector config's defaults too). */
export const FLEET_DEFAULTS = { leaseMs: 15_000, leaseBucket: 'plantgate-collector-leases', stateBucket: 'plantgate-collector-state' } as const;

export interface FleetOptions {
  /** This collector's name in the leases. Default `<hostname>:<pid>`. */
  member?: string;
  /** Used when the lease bucket is created: a lease not renewed for this long is free. Default 15,000 ms. */
  leaseMs?: number;
  /** Default `plantgate-collector-leases`. */
  leaseBucket?: string;
  /** Default `plantgate-collector-state`. */
  stateBucket?: string;
}

/** What the intake does when this collector takes or lets go of a gateway. */
export interface FleetHandlers {
  /** Start reading the gateway; `handedOver` is where the fleet stored it up to (undefined: nowhere yet). */
  take(gatewayId: string, handedOver: GatewayState | undefined, handover: Handover): Promise<void>;
  /** Stop reading it. `graceful`: everything taken is stored and acknowledged first. */
  drop(gatewayId: string, graceful: boolean): Promise<void>;
}

const encoder = new TextEncoder();

/** One held gateway's state writes: in order, each conditional on the one before, then the ack. */
export class Handover {
  private next: { state: GatewayState; ack: () => void } | undefined;
  private writing: Promise<void> | undefined;
  lost = false;

  constructor(
    private readonly kv: KV,
    private readonly key: string,
    private revision: number,
    private readonly onLost: (why: string) => void,
  ) {}

  /** The collector stored the gateway up to `state` (fsynced): put it, then `ack` the bus. */
  stored(state: GatewayState, ack: () => void): void {
    if (this.lost) return;
    // Only the newest state matters: an ack-all acknowledges what the earlier ones would have.
    this.next = { state, ack };
    this.writing ??= this.write().finally(() => {
      this.writing = undefined;
    });
  }

  /** Resolves once every state handed to stored() was put (or the lease was lost). */
  async flushed(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
  }

  /** The fence: the state as found, written back under this holder's revision. */
  async fence(value: Uint8Array | undefined): Promise<void> {
    if (value !== undefined) this.revision = await this.kv.update(this.key, value, this.revision);
  }

  private async write(): Promise<void> {
    while (this.next !== undefined && !this.lost) {
      const { state, ack } = this.next;
      this.next = undefined;
      const value = encoder.encode(stateJson(state));
      try {
        this.revision = this.revision === 0 ? await this.kv.create(this.key, value) : await this.kv.update(this.key, value, this.revision);
      } catch (err) {
        this.lost = true;
        this.onLost(`its state could not be handed over: ${(err as Error).message}`);
        return;
      }
      ack();
    }
  }
}

interface Held {
  revision: number;
  renewedAt: number;
  handover: Handover;
}

export class FleetMembership {
  private readonly held = new Map<string, Held>();
  private readonly memberKey: string;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private closed = false;

  private constructor(
    private readonly leases: KV,
    private readonly states: KV,
    private readonly stateBucket: string,
    readonly member: string,
    readonly leaseMs: number,
    private readonly gateways: string[],
    private readonly handlers: FleetHandlers,
    private readonly logger: Logger,
  ) {
    this.memberKey = `member.${token(member)}`;
  }

  /** Opens (or creates) the buckets and takes every free gateway of `gateways` at once, then every leaseMs / 3. */
  static async join(js: JetStreamClient, gateways: string[], handlers: FleetHandlers, opts: FleetOptions, logger: Logger): Promise<FleetMembership> {
    const leaseBucket = opts.leaseBucket ?? FLEET_DEFAULTS.leaseBucket;
    const stateBucket = opts.stateBucket ?? FLEET_DEFAULTS.stateBucket;
    const leases = await js.views.kv(leaseBucket, { ttl: opts.leaseMs ?? FLEET_DEFAULTS.leaseMs, history: 1 });
    const states = await js.views.kv(stateBucket, { history: 1 });
    // The bucket's max age decides when a lease is free, whatever this collector was configured with.
    const leaseMs = (await leases.status()).ttl;
    if (!(leaseMs > 0)) throw new Error(`the lease bucket ${leaseBucket} has no max age: its leases would never expire`);
    const m = new FleetMembership(leases, states, stateBucket, opts.member ?? `${hostname()}:${process.pid}`, leaseMs, gateways, handlers, logger);
    await m.tick();
    m.schedule();
    return m;
  }

  /** The gateways this collector holds now. */
  holding(): string[] {
    return [...this.held.keys()];
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => {
        this.ticking = undefined;
        this.schedule();
      });
    }, this.leaseMs / 3);
  }

  private async tick(): Promise<void> {
    let share = this.gateways.length;
    try {
      await this.leases.put(this.memberKey, encoder.encode(this.member));
      let members = 0;
      for await (const _ of await this.leases.keys('member.>')) members++;
      share = Math.ceil(this.gateways.length / Math.max(1, members));
    } catch (err) {
      this.logger.warn({ member: this.member, err: (err as Error).message }, 'collector: fleet membership');
    }
    for (const id of this.gateways) {
      if (this.closed) return;
      const h = this.held.get(id);
      try {
        if (h !== undefined) await this.renew(id, h);
        else if (this.held.size < share) await this.tryTake(id);
      } catch (err) {
        this.logger.warn({ gatewayId: id, err: (err as Error).message }, 'collector: fleet lease');
      }
    }
    // More than a share: give one back, for a member with fewer to take at its next round.
    const extra = this.held.size > share ? [...this.held.keys()].at(-1) : undefined;
    if (extra !== undefined && !this.closed) {
      this.logger.info({ gatewayId: extra, member: this.member, share }, 'collector: gave a gateway back to the fleet (more than a share)');
      await this.giveBack(extra);
    }
  }

  private async renew(id: string, h: Held): Promise<void> {
    try {
      h.revision = await this.leases.update(leaseKey(id), encoder.encode(this.member), h.revision);
      h.renewedAt = performance.now();
    } catch (err) {
      // Not renewed for half the lease (the server frees it after a whole one): let it go before
      // another collector can take it.
      if (performance.now() - h.renewedAt >= this.leaseMs / 2 || /wrong last sequence/i.test((err as Error).message)) {
        await this.lose(id, `its lease could not be renewed: ${(err as Error).message}`);
      }
    }
  }

  private async tryTake(id: string): Promise<void> {
    let revision: number;
    try {
      revision = await this.leases.create(leaseKey(id), encoder.encode(this.member));
    } catch {
      return; // Held by another collector.
    }
    const renewedAt = performance.now();
    const entry = await this.states.get(token(id));
    const found = entry !== null && entry.operation === 'PUT' ? entry : undefined;
    const handover = new Handover(this.states, token(id), found?.revision ?? 0, (why) => void this.lose(id, why));
    this.held.set(id, { revision, renewedAt, handover });
    try {
      const handedOver = found !== undefined ? parseState(new TextDecoder().decode(found.value), `${this.stateBucket}/${id}`) : undefined;
      await handover.fence(found?.value);
      this.logger.info({ gatewayId: id, member: this.member, from: handedOver?.nextSeq ?? 0 }, 'collector: took the gateway (fleet lease)');
      await this.handlers.take(id, handedOver, handover);
    } catch (err) {
      await this.lose(id, `it could not be taken: ${(err as Error).message}`);
    }
  }

  private async lose(id: string, why: string): Promise<void> {
    const h = this.held.get(id);
    if (h === undefined) return;
    this.held.delete(id);
    h.handover.lost = true;
    this.logger.error({ gatewayId: id, member: this.member, why }, 'collector: let the gateway go (fleet lease)');
    await this.handlers.drop(id, false);
  }

  /** Stores and acknowledges what was taken of the gateway, then frees its lease for another member. */
  private async giveBack(id: string): Promise<void> {
    const h = this.held.get(id);
    if (h === undefined) return;
    this.held.delete(id);
    await this.handlers.drop(id, true);
    await this.leases.delete(leaseKey(id), { previousSeq: h.revision }).catch((err: unknown) => this.logger.warn({ gatewayId: id, err: (err as Error).message }, 'collector: could not give the lease back; it expires'));
  }

  /** Stops renewing; every held gateway is stored, acknowledged and its lease given back for the others to take now. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.ticking;
    for (const id of [...this.held.keys()]) await this.giveBack(id);
    await this.leases.delete(this.memberKey).catch(() => undefined);
  }
}

/** Key-value keys are dot-separated tokens of [-/_=a-zA-Z0-9]: a gateway id (dots allowed) is one token. */
function token(s: string): string {
  return s.replace(/[^-_=a-zA-Z0-9]/g, (c) => `=${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function leaseKey(gatewayId: string): string {
  return `gateway.${token(gatewayId)}`;
}
