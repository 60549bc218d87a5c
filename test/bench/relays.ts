// The relays the gateway is compared with, each run as its own process by the throughput bench:
//   node dist/test/bench/relays.js pipe    LISTEN_PORT TARGET_PORT
//   node dist/test/bench/relays.js framing TCP_PORT TARGET_PORT [TLS_PORT CA CERT KEY]
// `pipe` is what a plant gets from a few lines of Node: bytes in, bytes out, one upstream socket per
// agent. `framing` is the gateway with every enforcement step switched off, built from the
// project's own parts: the agent-facing listeners (ModbusPlainListener with a static identity for
// 127.0.0.1 and, with TLS_PORT, ModbusTlsListener with mutual TLS), the codec behind them (MBAP
// reassembly and validation, answers in request order, writes corked per turn) and an UpstreamPool
// (agents multiplexed onto 2 PLC connections with transaction-id remapping). Only the pipeline is
// different: it allows everything, with no identity check, no token, no policy, no audit and no
// metrics. gateway ÷ framing relay (same transport) is therefore the cost of enforcement.
// Prints "ready" on stdout once listening.
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import type { Decision } from '../../src/core/command.js';
import type { CommandPipeline } from '../../src/core/pipeline.js';
import { StaticIdentityMap } from '../../src/identity/static-ip.js';
import { ModbusPlainListener, ModbusTlsListener, type UpstreamRoute } from '../../protocols/modbus/listener.js';
import { UpstreamPool } from '../../protocols/modbus/upstream.js';

/** The workload the static identity of 127.0.0.1 stands for (the pipeline never looks at it). */
const RELAY_WORKLOAD = 'spiffe://plant.example/bench/framing-relay';

/** One shared answer: the listener only reads `effect`, and no audit record is linked to it. */
const ALLOW: Decision = Object.freeze({ effect: 'allow', reason: 'ALLOWED', ruleId: '', bundleRevision: 0, durable: false });

/** Every enforcement step switched off: authorize is a constant allow, everything else a no-op. */
export const passThroughPipeline: CommandPipeline = {
  authorize: () => ALLOW,
  refuse: () => ({ effect: 'deny', reason: 'UNSUPPORTED_FUNCTION', ruleId: '', bundleRevision: 0, durable: false }),
  outcome: () => undefined,
  sessionOpened: () => undefined,
  sessionClosed: () => undefined,
  violation: () => undefined,
};

function pipeRelay(target: { host: string; port: number }): (socket: net.Socket) => void {
  return (socket) => {
    socket.setNoDelay(true);
    const up = net.connect({ ...target, noDelay: true });
    socket.pipe(up).pipe(socket);
    const end = () => {
      socket.destroy();
      up.destroy();
    };
    socket.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  };
}

async function framingRelay(listenPort: number, target: { host: string; port: number }, tlsArgs: string[]): Promise<void> {
  const pool = new UpstreamPool({ ...target, connections: 2, timeoutMs: 1000 });
  await pool.ready();
  // The bench plant has one PLC at unit 1; the gateway resolves the same route from the bundle.
  const routeToPlc: UpstreamRoute = { pool, unitId: 1 };
  const route = () => routeToPlc;
  const plain = new ModbusPlainListener({
    host: '127.0.0.1',
    port: listenPort,
    identities: StaticIdentityMap.fromConfig({ identities: [{ address: '127.0.0.1', workload: RELAY_WORKLOAD }] }),
    pipeline: passThroughPipeline,
    route,
  });
  await plain.listen();
  if (tlsArgs.length === 4) {
    const [tlsPort, ca, cert, key] = tlsArgs;
    const secure = new ModbusTlsListener({
      host: '127.0.0.1',
      port: Number(tlsPort),
      // The lab PKI, the same files the gateway serves with: same handshake, same cipher suite.
      tls: { ca: await readFile(ca), cert: await readFile(cert), key: await readFile(key) },
      pipeline: passThroughPipeline,
      route,
    });
    await secure.listen();
  }
}

const [mode, listenPort, targetPort, ...rest] = process.argv.slice(2);
const target = { host: '127.0.0.1', port: Number(targetPort) };
if (mode === 'pipe') {
  await new Promise<void>((resolve) => net.createServer(pipeRelay(target)).listen(Number(listenPort), '127.0.0.1', resolve));
} else if (mode === 'framing' && (rest.length === 0 || rest.length === 4)) {
  await framingRelay(Number(listenPort), target, rest);
} else {
  console.error('usage: relays.js pipe LISTEN_PORT TARGET_PORT | framing TCP_PORT TARGET_PORT [TLS_PORT CA CERT KEY]');
  process.exit(2);
}
console.log('ready');
process.on('SIGTERM', () => process.exit(0));
