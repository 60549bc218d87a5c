// The gateway answers like the PLC behind it would (docs/troubleshooting.md): a request the spec
// refuses gets the spec's exception on the same connection, a framing error closes the connection
// only after the answers already produced have left, and a unit id with no asset behind it gets
// 0x0A (gateway path unavailable) with a reason of its own. Real TLS, real gateway, simulated PLC.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { encodeFrame } from '../../../protocols/modbus/codec.js';
import { auditRecords, authenticate, rawAgent, within } from './harness.js';

describe('Modbus fidelity through the gateway', () => {
  let dir: string;
  let lab: Lab;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-fidelity-'));
    const clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock, clock: new ManualClock(Date.now()) });
    await authenticate(lab, 'optimizer', clock.now());
  });

  afterAll(async () => {
    await lab?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function reasonsFrom(from: number): Promise<string[]> {
    // In the agent's order (transaction ids): a read is recorded once answered, with its answer,
    // so a denial can be on record before an allowed read sent ahead of it.
    const records = (await auditRecords(lab.gateway.audit, from)).filter((r) => r.decision?.decision);
    records.sort((a, b) => Number(a.decision!.command?.transactionId ?? 0) - Number(b.decision!.command?.transactionId ?? 0));
    return records.map((r) => r.decision!.decision!.reason ?? '');
  }

  it('answers FC3 with quantity 0 and 126 with exception 0x03 on the same connection, and the pipelined reads behind them', async () => {
    const from = lab.gateway.audit.nextSeq;
    const agent = await rawAgent(lab.gateway.modbus.port, await lab.credentials('optimizer'));
    lab.sim.write('tank1.level', 42.5);
    agent.socket.write(
      Buffer.concat([
        encodeFrame(1, 1, Buffer.from([0x03, 0, 0, 0, 0])),
        encodeFrame(2, 1, Buffer.from([0x04, 0, 0, 0, 1])),
        encodeFrame(3, 1, Buffer.from([0x03, 0, 0, 0, 126])),
        encodeFrame(4, 1, Buffer.from([0x04, 0, 0, 0, 1])),
      ]),
    );
    const answers = await within(agent.receive(4), 5000, 'four answers');
    expect(answers.map((f) => [f.transactionId, f.pdu.toString('hex')])).toEqual([
      [1, '8303'],
      [2, '040201a9'],
      [3, '8303'],
      [4, '040201a9'],
    ]);
    expect(await reasonsFrom(from)).toEqual(['PROTOCOL_VIOLATION', 'ALLOWED', 'PROTOCOL_VIOLATION', 'ALLOWED']);
    agent.socket.destroy();
  });

  it('answers the requests before a bad frame in the same segment (the write ran), then closes', async () => {
    const agent = await rawAgent(lab.gateway.modbus.port, await lab.credentials('optimizer'));
    agent.socket.write(
      Buffer.concat([
        encodeFrame(10, 1, Buffer.from([0x06, 0, 0, 0x02, 0x26])), // tank1.setpoint := 55.0 %
        encodeFrame(11, 1, Buffer.from([0x04, 0, 0, 0, 1])),
        Buffer.from([0, 12, 0, 7, 0, 6, 1, 3, 0, 0, 0, 1]), // protocol id 7
      ]),
    );
    const answers = await within(agent.receive(2), 5000, 'the two answers before the bad frame');
    expect(answers.map((f) => [f.transactionId, f.pdu[0]])).toEqual([
      [10, 0x06],
      [11, 0x04],
    ]);
    await within(agent.closed, 5000, 'the gateway to close the connection');
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(55, 5);
  });

  it('answers a unit id no asset answers to with 0x0A and reason NO_ROUTE', async () => {
    const from = lab.gateway.audit.nextSeq;
    const agent = await rawAgent(lab.gateway.modbus.port, await lab.credentials('optimizer'));
    agent.send(20, 9, [0x04, 0, 0, 0, 1]);
    agent.send(21, 1, [0x04, 0, 0, 0, 1]);
    const answers = await within(agent.receive(2), 5000, 'two answers');
    expect(answers.map((f) => [f.transactionId, f.unitId, f.pdu.toString('hex').slice(0, 4)])).toEqual([
      [20, 9, '840a'],
      [21, 1, '0402'],
    ]);
    expect(await reasonsFrom(from)).toEqual(['NO_ROUTE', 'ALLOWED']);
    agent.socket.destroy();
  });
});
