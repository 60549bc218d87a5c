// Wiring: builds every part from the configuration, connects them in the one direction DESIGN §2
// allows, and starts and stops them in order. No enforcement logic lives here.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { startAgentApi } from '../admin/agent-api.js';
import { AuditLog } from '../audit/log.js';
import { bundleRecord, tokenRecord } from '../audit/records.js';
import { startShipper } from '../audit/shipper.js';
import { systemClock, type Clock } from '../core/clock.js';
import { createLogger, type Logger } from '../core/log.js';
import { TokenRegistry } from '../identity/registry.js';
import { ModbusTlsListener, type UpstreamRoute } from '../../protocols/modbus/listener.js';
import { UpstreamPool } from '../../protocols/modbus/upstream.js';
import type { GatewayConfig } from './config.js';
import { EnforcementPipeline } from './pipeline.js';
import { PolicyState, readPinnedKeys } from './policy-state.js';

export interface GatewayHandle {
  modbus: { host: string; port: number };
  agentApi: { host: string; port: number };
  pipeline: EnforcementPipeline;
  audit: AuditLog;
  policy: PolicyState;
  tokens: TokenRegistry;
  /** Resolves when every upstream PLC endpoint has at least one live connection. */
  upstreamsReady(): Promise<void>;
  reloadBundle(): Promise<boolean>;
  close(): Promise<void>;
}

export async function startGateway(config: GatewayConfig, options: { clock?: Clock; logger?: Logger } = {}): Promise<GatewayHandle> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger('plantgate');
  const [ca, cert, key] = await Promise.all([readFile(config.tls.ca), readFile(config.tls.cert), readFile(config.tls.key)]);
  const tlsFiles = { ca, cert, key };

  const audit = await AuditLog.open({
    dir: config.audit.spool_dir,
    gatewayId: config.gateway_id,
    clock,
    maxBytes: config.audit.max_bytes,
    logger,
  });

  const policy = new PolicyState({
    stateDir: path.join(config.state_dir, 'policy'),
    pinned: await readPinnedKeys(config.policy.trusted_keys),
    clock,
    logger,
    readsWhenExpired: config.policy.reads_when_expired,
  });
  await policy.init();
  const reloadBundle = async (): Promise<boolean> => {
    const result = await policy.load(config.policy.bundle_file);
    if (result.ok) {
      audit.append(bundleRecord({ kind: 'loaded', revision: result.revision, source: result.source === 'configured' ? config.policy.bundle_file : 'last-known-good' }));
      logger.info({ revision: result.revision, source: result.source }, 'policy bundle active');
    } else {
      audit.append(bundleRecord({ kind: 'rejected', revision: 0, source: config.policy.bundle_file, reason: 'BUNDLE_UNAVAILABLE', detail: `${result.code}: ${result.message}` }));
    }
    return result.ok;
  };
  await reloadBundle();

  const tokens = new TokenRegistry({ clock, maxIdentities: config.identity.max_identities });
  const pipeline = new EnforcementPipeline({ policy, tokens, audit, clock, logger });

  const pools = new Map<string, { pool: UpstreamPool; unitId: number | undefined }>();
  for (const u of config.upstreams) {
    const pool = new UpstreamPool({ host: u.host, port: u.port, connections: u.connections, timeoutMs: u.timeout_ms, logger });
    pools.set(u.asset, { pool, unitId: u.unit_id });
  }
  // Routes are rebuilt when a bundle becomes active (the PLC-side unit id defaults to the asset's
  // unit id in the bundle), so the per-command lookup is one Map get.
  let routes = new Map<string, UpstreamRoute>();
  let routedEngine: unknown;
  const route = (assetId: string): UpstreamRoute | undefined => {
    const engine = policy.engine;
    if (engine !== routedEngine) {
      routedEngine = engine;
      routes = new Map();
      for (const [assetId, { pool, unitId }] of pools) {
        const plcUnit = unitId ?? engine?.asset(assetId)?.unit_id;
        if (plcUnit !== undefined) routes.set(assetId, { pool, unitId: plcUnit });
      }
    }
    return routes.get(assetId);
  };

  const listener = new ModbusTlsListener({
    host: config.listeners.modbus_tls.host,
    port: config.listeners.modbus_tls.port,
    tls: tlsFiles,
    pipeline,
    route,
    logger,
  });
  const modbus = await listener.listen();

  const agentApi = await startAgentApi(
    { host: config.listeners.agent_api.host, port: config.listeners.agent_api.port, tls: tlsFiles },
    {
      trust: () => {
        const engine = policy.engine;
        const issuers = policy.issuers;
        if (engine === undefined || issuers === undefined) return undefined;
        return { issuers, audience: engine.audience, maxTokenTtlSec: engine.maxTokenTtlSec };
      },
      tokens,
      clock,
      leewaySec: config.identity.leeway_sec,
      logger,
      onTokenAccepted: (_workloadId, subject) => {
        audit.append(tokenRecord({ kind: 'accepted', sessionId: '', subject, reason: 'ALLOWED' }));
      },
      onTokenRejected: (workloadId, thumbprint, reason, detail) => {
        audit.append(
          tokenRecord({
            kind: 'rejected',
            sessionId: '',
            subject: {
              workloadId, owner: '', taskId: '', taskPurpose: '', jti: '', roles: [], scopes: [],
              assurance: 'none', certThumbprint: thumbprint, issuer: '', expiresAtMs: 0, issuedAtMs: 0,
            },
            reason,
            detail,
          }),
        );
      },
    },
  );

  const shipper =
    config.audit.collector === undefined
      ? undefined
      : startShipper({
          log: audit,
          host: config.audit.collector.host,
          port: config.audit.collector.port,
          tls: { ca, cert, key, servername: config.audit.collector.server_name },
          gatewayId: config.gateway_id,
          logger,
        });

  logger.info({ modbus, agentApi: agentApi.port, gateway: config.gateway_id }, 'gateway listening');

  return {
    modbus,
    agentApi: { host: config.listeners.agent_api.host, port: agentApi.port },
    pipeline,
    audit,
    policy,
    tokens,
    upstreamsReady: async () => {
      await Promise.all([...pools.values()].map((p) => p.pool.ready()));
    },
    reloadBundle,
    close: async () => {
      await listener.close();
      await agentApi.close();
      for (const { pool } of pools.values()) pool.close();
      await shipper?.close();
      await audit.close();
    },
  };
}
