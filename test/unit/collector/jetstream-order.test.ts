// How a collector orders one gateway's messages from an untrusted bus (src/collector/jetstream.ts,
// docs/audit.md Fleets): by the seq of the record each carries, keeping for each seq the one that
// chains; and which messages it acknowledges (ack-all) once the collector stored what they carried.
import { describe, expect, it } from 'vitest';
import type { JsMsg } from 'nats';
import { leafHash, ZERO_HASH } from '../../../src/audit/hash.js';
import { outcomeRecord } from '../../../src/audit/records.js';
import { encodeRecord, SCHEMA_VERSION } from '../../../src/audit/schema.js';
import { GatewayIntake } from '../../../src/collector/jetstream.js';
import type { AttachedStream, ReceivedRecord } from '../../../src/collector/server.js';
import { silentLogger } from '../../../src/core/log.js';

/** A genuine chain of `n` records of gw-1. */
function chain(n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let prev: Uint8Array = ZERO_HASH;
  for (let seq = 0; seq < n; seq++) {
    const bytes = encodeRecord({ schemaVersion: SCHEMA_VERSION, gatewayId: 'gw-1', seq, timeUnixMs: 1_700_000_000_000 + seq, prevHash: prev, ...outcomeRecord({ decisionSeq: seq, sessionId: 's', status: 'ok' }) });
    out.push(bytes);
    prev = leafHash(bytes);
  }
  return out;
}

function setup() {
  const stored: number[] = [];
  const alerts: string[] = [];
  const acked: number[] = [];
  let streamSeq = 0;
  const stream: AttachedStream = {
    nextSeq: 0,
    lastHash: ZERO_HASH,
    push: (records: ReceivedRecord[]) => stored.push(...records.map((r) => Number(r.rec.seq))),
    alert: (a) => alerts.push(`${a.kind}: ${a.message}`),
    drained: () => Promise.resolve(),
    dead: false,
  };
  const intake = new GatewayIntake('gw-1', stream, 3, silentLogger);
  const deliver = (data: Uint8Array) => {
    const s = ++streamSeq;
    intake.take({ data, subject: 'plantgate.audit.plant-a.gw-1', info: { streamSequence: s }, ack: () => acked.push(s) } as unknown as JsMsg);
  };
  return { intake, deliver, stored, alerts, acked };
}

describe('ordering a gateway\'s records from the bus', () => {
  it('stores records in seq order whatever order they arrive in, and drops copies', () => {
    const recs = chain(4);
    const { deliver, stored, alerts } = setup();
    for (const i of [1, 0, 0, 3, 2, 1]) deliver(recs[i]!);
    expect(stored).toEqual([0, 1, 2, 3]);
    expect(alerts).toEqual([]);
  });

  it('keeps, for a seq, the message that chains, and reports the one that does not as not the gateway\'s', () => {
    const recs = chain(2);
    const forged = encodeRecord({ schemaVersion: SCHEMA_VERSION, gatewayId: 'gw-1', seq: 1, timeUnixMs: 1, prevHash: new Uint8Array(32).fill(9), ...outcomeRecord({ decisionSeq: 0, sessionId: 'x', status: 'ok' }) });
    const { deliver, stored, alerts } = setup();
    deliver(recs[0]!);
    deliver(forged);
    deliver(recs[1]!);
    deliver(new TextEncoder().encode('not a record'));
    expect(stored).toEqual([0, 1]);
    expect(alerts.map((a) => a.split(':')[0])).toEqual(['sink_alert', 'sink_alert']);
    expect(alerts[0]).toMatch(/message 2 .* claims seq 1 but does not chain/);
  });

  it('acknowledges a message only once what it carried is stored, and never past one still waiting', () => {
    const recs = chain(3);
    const { intake, deliver, acked } = setup();
    deliver(recs[0]!); // stream seq 1
    deliver(recs[2]!); // 2: waits for seq 1
    expect(acked).toEqual([]);
    intake.acked(0);
    expect(acked).toEqual([1]);
    deliver(recs[1]!); // 3: releases 2
    intake.acked(1);
    expect(acked).toEqual([1]); // stream seq 2 (record 2) is not stored yet
    intake.acked(2);
    expect(acked).toEqual([1, 3]);
  });

  it('gives the stream up with a gap alert when too many records wait for a missing one', () => {
    const recs = chain(6);
    const { deliver, stored, alerts } = setup();
    for (const i of [1, 2, 3, 4]) deliver(recs[i]!);
    expect(stored).toEqual([]);
    expect(alerts).toEqual([expect.stringMatching(/^gap: record 0 never came on the bus; 4 later records are waiting/)]);
  });
});
