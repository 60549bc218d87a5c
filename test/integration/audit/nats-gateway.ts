// A gateway's audit log shipping to a real nats-server through the JetStream sink, for the tests of
// collectors reading from the stream: records appended, hashed, fsynced and published as a gateway does.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { AuditLog } from '../../../src/audit/log.js';
import { startNatsSink, type NatsSink } from '../../../src/audit/nats-sink.js';
import { noteSigner } from '../../../src/audit/note.js';
import { outcomeRecord } from '../../../src/audit/records.js';
import type { Clock } from '../../../src/core/clock.js';

export interface ShippingGateway {
  id: string;
  /** Its checkpoint key: verifierKey(`plantgate/${id}`, key) is what collectors list. */
  key: KeyObject;
  log: AuditLog;
  sink: NatsSink;
}

/** A gateway `id` with its spool under `root`, signing a checkpoint every `checkpointEvery` records. */
export async function shippingGateway(root: string, natsUrl: string, clock: Clock, id: string, checkpointEvery: number): Promise<ShippingGateway> {
  const key = generateKeyPairSync('ed25519').privateKey;
  const log = await AuditLog.open({ dir: join(root, `spool-${id}`), gatewayId: id, clock, checkpoints: { signer: noteSigner(`plantgate/${id}`, key), everyRecords: checkpointEvery, everyMs: 3_600_000 } });
  const sink = startNatsSink({ log, gatewayId: id, site: 'plant-a', servers: [natsUrl], createStream: true, reconnect: { minMs: 20, maxMs: 200 }, ackTimeoutMs: 2000 });
  return { id, key, log, sink };
}

/** Appends `n` records to the gateway's log and waits until the stream has them all. */
export async function writeShipped(g: ShippingGateway, n: number): Promise<void> {
  for (let i = 0; i < n; i++) g.log.append(outcomeRecord({ decisionSeq: i, sessionId: 's-1', status: 'ok', upstreamLatencyUs: 100 + i }));
  await g.log.sync();
  const last = g.log.nextSeq - 1;
  while (g.log.ackedSeq < last) await new Promise<void>((resolve) => g.sink.once('acked', () => resolve()));
}
