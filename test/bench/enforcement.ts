// The cost of enforcement itself, without sockets: `node dist/test/bench/enforcement.js [--quick]`.
// Starts the lab in this process (simulator, collector, gateway with the bench bundle), registers
// the bench agent's token over the agent API as an agent would, then calls the gateway's own
// pipeline the way the Modbus listener does for each request — authorize (resolve points, token,
// policy, interlocks, metrics, decision record appended to the audit log) and outcome (outcome
// record, metrics) — and prints CPU µs per command, for reads (records queued for the next group
// commit) and writes (each decision waits for its fsync, 32 in flight). The throughput bench
// measures the same path behind TLS and the upstream pool; the difference is the I/O.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Command, Decision } from '../../src/core/command.js';
import type { Session } from '../../src/core/pipeline.js';
import { putToken } from '../../src/cli/demo/agent.js';
import { startLab } from '../../src/cli/demo/lab.js';
import { certificateThumbprint } from '../../src/identity/cert.js';

const quick = process.argv.includes('--quick');
const N = quick ? 50_000 : 300_000;

function readCommand(sessionId: string): Command {
  return { sessionId, protocol: 'modbus', unitId: 1, assetId: '', operation: 'read', functionCode: 3, targets: [{ table: 'holding', address: 0, count: 10 }], points: [] };
}
function writeCommand(sessionId: string, i: number): Command {
  return {
    sessionId, protocol: 'modbus', unitId: 1, assetId: '', operation: 'write', functionCode: 16,
    targets: [{ table: 'holding', address: 0, count: 2 }], points: [], rawValues: [i & 0xffff, 7],
  };
}

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-bench-enforcement-'));
const lab = await startLab({
  stateDir: dir,
  rules: 'rules/bench/bundle.yaml',
  plant: 'fixtures/plants/bench.yaml',
  // Production checkpoint cadence; no shipping: the lab's collector runs in this process, and its
  // verification would be counted as the gateway's CPU (the throughput bench ships to a real one).
  patchConfig: (y) =>
    y
      .replace(/checkpoint_every_records: \d+/, 'checkpoint_every_records: 1000')
      .replace(/checkpoint_every_ms: \d+/, 'checkpoint_every_ms: 60000')
      .replace(/^ {2}collector: .*\n/m, '')
      // Nothing is acknowledged without a collector: room for every record of the full run.
      .replace(/^audit:\n/m, 'audit:\n  max_bytes: 8589934592\n'),
});
try {
  const creds = await lab.credentials('optimizer');
  const put = await putToken(lab.gateway.agentApi.host, lab.gateway.agentApi.port, creds, await lab.token('optimizer', { ttlSec: 900 }));
  if (put.status !== 200) throw new Error(`token refused: ${JSON.stringify(put.body)}`);
  const cert = new X509Certificate(creds.cert);
  const session: Session = {
    id: 'bench-session',
    protocol: 'modbus',
    workloadId: 'spiffe://plant.example/agent/optimizer',
    certThumbprint: certificateThumbprint(cert),
    remoteAddress: '127.0.0.1:1',
    assurance: 'mtls+token',
  };
  const pipeline = lab.gateway.pipeline;
  const ok = { status: 'ok' as const, latencyUs: 180 };

  // Reads: what a read costs the gateway's main thread besides its sockets.
  for (const round of quick ? [1, 2] : [1, 2, 3]) {
    const c0 = cpuUs();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const cmd = readCommand(session.id);
      const d = pipeline.authorize(session, cmd, { unitId: 1, transactionId: i & 0xffff, outcomeFollows: true }) as Decision;
      if (d.effect !== 'allow') throw new Error(`read denied: ${d.reason}`);
      pipeline.outcome(session, cmd, d, ok);
      // Let the group commit run now and then, as the event loop would between socket reads.
      if ((i & 1023) === 1023) await new Promise((r) => setImmediate(r));
    }
    await lab.gateway.audit.sync();
    const cpu = cpuUs() - c0;
    const wall = performance.now() - t0;
    console.log(`reads  round ${round}: ${(cpu / N).toFixed(1)} µs CPU per command (authorize + outcome as the Modbus front calls them: one audit record with the answer, fsynced in groups), ${Math.round(N / (wall / 1000))} commands/s on one thread`);
  }

  // Writes: 32 in flight, each forwarded (here: its outcome recorded) once its decision is durable.
  const W = quick ? 5_000 : 30_000;
  const c0 = cpuUs();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < W) {
        const i = next++;
        const cmd = writeCommand(session.id, i);
        const d = await pipeline.authorize(session, cmd, { unitId: 1, transactionId: i & 0xffff });
        if (d.effect !== 'allow') throw new Error(`write denied: ${d.reason}`);
        pipeline.outcome(session, cmd, d, ok);
      }
    }),
  );
  const cpu = cpuUs() - c0;
  const wall = performance.now() - t0;
  const st = lab.gateway.audit.stats();
  console.log(`writes (32 in flight): ${(cpu / W).toFixed(1)} µs CPU per command incl. the group commit's fsyncs, ${Math.round(W / (wall / 1000))} commands/s; ${st.fsyncs} fsyncs so far`);
} finally {
  await lab.close();
  await rm(dir, { recursive: true, force: true });
}
