// Starts the MCP front from the gateway's parts (docs/mcp.md): the pipeline every front uses, the
// Modbus upstream routes and OPC UA upstream sessions the other fronts use, and the gateway's one
// token verification and revocation state. Wiring only: what the front does lives in front.ts.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Clock } from '../../src/core/clock.js';
import type { Command } from '../../src/core/command.js';
import type { Logger } from '../../src/core/log.js';
import type { CommandPipeline } from '../../src/core/pipeline.js';
import { DEFAULT_GRANT_TTL_MS } from '../../src/approvals/store.js';
import type { TokenIntake } from '../../src/identity/intake.js';
import type { TokenRegistry } from '../../src/identity/registry.js';
import type { BundlePayload } from '../../src/policy/payload.js';
import type { UpstreamRoute } from '../modbus/listener.js';
import type { OpcuaService } from '../opcua/service.js';
import type { OpcuaAccess } from './commands.js';
import type { McpListenerConfig } from './config.js';
import { McpFront } from './front.js';
import type { ConnectionLimits } from '../../src/identity/handshakes.js';

export interface StartMcpOptions {
  config: McpListenerConfig;
  tls: { ca: string | Buffer; cert: string | Buffer; key: string | Buffer };
  pipeline: CommandPipeline;
  route(assetId: string): UpstreamRoute | undefined;
  /** The gateway's OPC UA service, when it runs one: its upstream sessions serve OPC UA assets. */
  opcua: OpcuaService | undefined;
  opcuaUpstreams: readonly { asset: string; object_node?: string }[];
  /** The active policy (PolicyState): the bundle its tools are generated from. */
  policy: { payload: BundlePayload | undefined };
  /** The gateway's one token intake (src/identity/intake.ts): bearer tokens are taken in there. */
  intake: Pick<TokenIntake, 'accept' | 'refused'>;
  tokens: TokenRegistry;
  clock: Clock;
  logger: Logger;
  gatewayId: string;
  interlockDetail(cmd: Command): string | undefined;
  /** The gateway's Prometheus registry (docs/mcp.md, Metrics). */
  registry?: Registry;
  limits?: ConnectionLimits;
}

export interface McpFrontHandle {
  front: McpFront;
  address: { host: string; port: number; resource: string };
  /** A new bundle or a revocation: clients re-list their tools; dead tokens' sessions close. */
  changed(): void;
  close(): Promise<void>;
}

export const PLANTGATE_VERSION = '0.1.0';

export async function startMcpFront(o: StartMcpOptions): Promise<McpFrontHandle> {
  // OPC UA assets are reached through the sessions the OPC UA service opened at start.
  const opcua: Map<string, OpcuaAccess> =
    o.opcua === undefined ? new Map() : (await import('./opcua-access.js')).opcuaAccesses(o.opcua.upstreams, o.policy.payload?.assets ?? [], o.opcuaUpstreams);
  const registers = o.registry === undefined ? [] : [o.registry];
  const answers = new Counter({ name: 'plantgate_mcp_requests_total', help: 'MCP front HTTP answers by status (401 token refused, 403 Host or Origin, 413 body, 429 per-token rate)', labelNames: ['status'], registers });
  const front: McpFront = new McpFront({
    config: o.config,
    tls: o.tls,
    pipeline: o.pipeline,
    upstreams: { modbus: (id) => o.route(id), opcua: (id) => opcua.get(id) },
    bundle: () => o.policy.payload,
    auth: { intake: o.intake },
    current: (s) => o.tokens.check(s),
    interlockDetail: o.interlockDetail,
    grantTtlMin: DEFAULT_GRANT_TTL_MS / 60_000,
    onAnswered: (status) => answers.inc({ status: String(status) }),
    gatewayId: o.gatewayId,
    version: PLANTGATE_VERSION,
    clock: o.clock,
    logger: o.logger,
    limits: o.limits,
  });
  new Gauge({
    name: 'plantgate_mcp_sessions',
    help: 'Open MCP sessions (2025 protocol revisions)',
    registers,
    collect() {
      this.set(front.sessionCount);
    },
  });
  const address = await front.listen();
  o.logger.info({ mcp: address }, 'MCP front listening');
  return { front, address, changed: () => front.revoked(), close: () => front.close() };
}
