// Wiring: builds every part from the configuration, connects them in the one direction
// docs/architecture.md ("Parts and their direction") allows, and starts and stops them in order.
// Enforcement lives in pipeline.ts and must not move here: a command's path never calls back into
// this file.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { startAgentApi } from '../admin/agent-api.js';
import { startOpsApi } from '../admin/ops-api.js';
import { loadEd25519PrivateKey } from '../audit/keys.js';
import { AuditLog } from '../audit/log.js';
import { noteSigner } from '../audit/note.js';
import { approvalRequestRecord, freezeRecord, revocationRecord, tokenRecord, type AuditEvent } from '../audit/records.js';
import type { NatsSinkAlert } from '../audit/nats-sink.js';
import { startShipper } from '../audit/shipper.js';
import { systemClock, type Clock } from '../core/clock.js';
import { createLogger, type Logger } from '../core/log.js';
import type { HandshakeRefusal } from '../identity/handshakes.js';
import { ConnectionLimiter } from '../identity/limits.js';
import { TokenRegistry } from '../identity/registry.js';
import { VerifiedTokenCache } from '../identity/token-cache.js';
import { RevocationStore, type Revocation } from '../identity/revocation.js';
import { startOperatorApi } from '../admin/operator-api.js';
import type { OpcuaService } from '../../protocols/opcua/service.js';
import type { McpFrontHandle } from '../../protocols/mcp/start.js';
import { TokenIntake } from '../identity/intake.js';
import { ApprovalStore } from '../approvals/store.js';
import { FreezeStore } from '../freeze/store.js';
import type { ProcessImage } from '../interlocks/process-image.js';
import { PolicyMemory } from '../policy/memory.js';
import { ModbusPlainListener, ModbusTlsListener } from '../../protocols/modbus/listener.js';
import { registerStaticToken, StaticIdentityMap } from '../identity/static-ip.js';
import type { Subject } from '../core/command.js';
import { UpstreamPool } from '../../protocols/modbus/upstream.js';
import { ModbusRegisterReader } from '../../protocols/modbus/register-reader.js';
import { connectionLimits, type GatewayConfig } from './config.js';
import { GatewayMetrics } from './metrics.js';
import { EnforcementPipeline } from './pipeline.js';
import { BundleLifecycle } from './bundle-lifecycle.js';
import { SafetyLifecycle } from './safety-lifecycle.js';
import { upstreamRouter } from './routes.js';
// Operator and agent API views (issue 6): bundle status for GET /v1/bundle, recent decisions for GET /v1/decisions.
import { BundleStatus } from '../admin/bundle-status.js';
import { RecentDecisions, recordingPipeline } from '../admin/recent-decisions.js';
import { PolicyState, readPinnedKeys } from './policy-state.js';
import { RESOLVERS } from '../../protocols/resolvers.js';
// Bundle lifecycle (issue 9): distribution from a watched file or a polled HTTPS URL.
import { startBundleSource, UrlBundleSource } from '../policy/source.js';

export interface GatewayHandle {
  modbus: { host: string; port: number };
  /** The plaintext static-identity Modbus listener, when `listeners.modbus_plain` is configured. */
  modbusPlain?: { host: string; port: number };
  /**
   * Binds a token to a static identity of the plaintext listener (present only when it is
   * configured): for the operator API / tooling, since static-IP devices cannot use the mTLS agent
   * API. Rejects with a TokenError / PlantgateError carrying the reason code.
   */
  registerStaticToken?(workloadId: string, jwt: string): Promise<Subject>;
  agentApi: { host: string; port: number };
  ops?: { host: string; port: number };
  metrics: GatewayMetrics;
  pipeline: EnforcementPipeline;
  audit: AuditLog;
  policy: PolicyState;
  tokens: TokenRegistry;
  revocations: RevocationStore;
  approvals: ApprovalStore;
  /** The operator's emergency freezes (docs/operator.md). */
  freezes: FreezeStore;
  /** The process image interlocks read (undefined when the bundle has no interlocks). */
  processImage(): ProcessImage | undefined;
  operatorApi?: { host: string; port: number };
  /** The agent-facing OPC UA endpoint, when configured; ready once every OPC UA server is connected and mirrored. */
  opcua?: { endpointUrl: string; whenReady(): Promise<void> };
  /** The MCP front (docs/mcp.md), when configured: where it listens and the resource URI tokens name. */
  mcp?: { host: string; port: number; resource: string };
  /** Resolves when every upstream PLC endpoint has at least one live connection. */
  upstreamsReady(): Promise<void>;
  /** Reloads the configured bundle; `trigger` ('sighup', 'operator <sub>') is recorded in the audit and the bundle status. */
  reloadBundle(trigger?: string): Promise<boolean>;
  /** The active bundle and the last load result (operator API GET /v1/bundle). */
  bundleStatus: BundleStatus;
  /** Each workload's recent decisions (agent API GET /v1/decisions). */
  recentDecisions: RecentDecisions;
  /**
   * SIGHUP: re-reads what can change without dropping a session (pinned policy keys, bundle file)
   * and reloads the bundle. Other changes need a restart; they are logged, not applied.
   */
  reload(next: GatewayConfig): Promise<boolean>;
  /** Stops accepting, lets in-flight commands finish (up to drainMs), flushes the audit spool. */
  close(drainMs?: number, onStep?: (step: string) => void): Promise<void>;
}

/** What a start opened so far, each with its close: a failed start closes them, newest first. */
type Opened = Array<[string, () => unknown]>;

/**
 * Starts every part, or none: a start that fails part-way (a port in use, a file that cannot be
 * read, a damaged spool) closes what it had opened — listeners, PLC connections, pollers, the
 * spool — before it rejects, so the process can exit instead of half-running (docs/deployment.md).
 */
export async function startGateway(config: GatewayConfig, options: { clock?: Clock; logger?: Logger } = {}): Promise<GatewayHandle> {
  const logger = options.logger ?? createLogger('plantgate');
  const opened: Opened = [];
  try {
    return await startParts(config, { ...options, logger }, opened);
  } catch (err) {
    for (const [name, close] of opened.reverse()) {
      try {
        await close();
      } catch (closeErr) {
        logger.warn({ part: name, err: (closeErr as Error).message }, 'closing a part of a failed start failed');
      }
    }
    throw err;
  }
}

async function startParts(config: GatewayConfig, options: { clock?: Clock; logger: Logger }, opened: Opened): Promise<GatewayHandle> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger;
  const [ca, cert, key] = await Promise.all([readFile(config.tls.ca), readFile(config.tls.cert), readFile(config.tls.key)]);
  const tlsFiles = { ca, cert, key };

  // The checkpoint origin and key name must be what `plantgate audit key --name` prints.
  const checkpoints =
    config.audit.key_file === undefined
      ? undefined
      : {
          signer: noteSigner(`plantgate/${config.gateway_id}`, await loadEd25519PrivateKey(config.audit.key_file)),
          everyRecords: config.audit.checkpoint_every_records,
          everyMs: config.audit.checkpoint_every_ms,
        };
  const audit = await AuditLog.open({
    dir: config.audit.spool_dir,
    gatewayId: config.gateway_id,
    clock,
    maxBytes: config.audit.max_bytes,
    logger,
    checkpoints,
  });
  opened.push(['audit log', () => audit.close()]);

  /** Records an event that gates nothing by itself; false (and an error log) when the spool refuses it. */
  const appendSafely = (event: AuditEvent): boolean => {
    try {
      audit.append(event);
      return true;
    } catch (err) {
      logger.error({ err: (err as Error).message, event: Object.keys(event)[0] }, 'audit record refused');
      return false;
    }
  };

  const policy = new PolicyState({
    stateDir: path.join(config.state_dir, 'policy'),
    pinned: await readPinnedKeys(config.policy.trusted_keys, config.policy.retired_keys),
    clock,
    logger,
    readsWhenExpired: config.policy.reads_when_expired,
    resolvers: RESOLVERS,
  });
  await policy.init();
  const revocations = await RevocationStore.open({ stateDir: path.join(config.state_dir, 'identity'), clock, leewaySec: config.identity.leeway_sec });
  opened.push(['revocations', () => revocations.close()]);
  // Emergency freezes are in force from the first command: loaded before any listener opens.
  const freezes = await FreezeStore.open({
    stateDir: path.join(config.state_dir, 'freeze'),
    clock,
    unfreezeQuorum: config.emergency_freeze.unfreeze_quorum,
    voteTtlMs: config.emergency_freeze.unfreeze_vote_ttl_sec * 1000,
    // Who froze or lifted what is on disk before the operator is told it is done.
    record: async (c) => {
      metrics.freezeChanged(c.kind);
      logger.warn({ freeze: c.freeze.id, kind: c.kind, scope: c.freeze.scope, value: c.freeze.value, mode: c.freeze.mode, by: c.by, reason: c.reason }, 'emergency freeze changed');
      await audit.appendDurable(freezeRecord(c)).catch((err: unknown) => logger.error({ err: (err as Error).message, freeze: c.freeze.id }, 'audit record of a freeze change refused'));
    },
  });
  opened.push(['freezes', () => freezes.close()]);
  // The bundle's own revocations are in force before its rules are (set as the bundle is activated).
  policy.onActivate = (p) => revocations.setBundleRevocations(p.revocations ?? [], p.issued_at);
  const tokens = new TokenRegistry({
    clock,
    maxIdentities: config.identity.max_identities,
    maxTokensPerIdentity: config.identity.max_tokens_per_identity,
    revocations,
  });
  // Declared here: the first bundle load (below) builds the process image before OPC UA starts.
  let opcua: OpcuaService | undefined;
  // Rate budgets and step bases outlive bundle reloads (docs/policy.md, Decide, then commit).
  const memory = new PolicyMemory();
  // Interlocks read live values through the gateway's own connections (one per PLC, not the
  // agents'), rebuilt whenever a bundle becomes active.
  const safety = new SafetyLifecycle({
    policy,
    upstreams: config.upstreams,
    registers: (endpoint) => new ModbusRegisterReader(endpoint, { timeoutMs: 1000, logger }),
    opcua: (assetId) => opcua?.upstreams.get(assetId),
    memory,
    clock,
    logger,
  });
  opened.push(['process image', () => safety.close()]);

  // Started further down; a bundle loaded later tells its clients their tools changed.
  let mcp: McpFrontHandle | undefined;
  const bundleStatus = new BundleStatus();
  const bundles = new BundleLifecycle({
    policy,
    bundleFile: config.policy.bundle_file,
    lkgFile: path.join(config.state_dir, 'policy', 'bundle.lkg.jws'),
    status: bundleStatus,
    clock,
    logger,
    record: appendSafely,
    onActivated: () => {
      safety.rebuild();
      // A key removed from the bundle stops working at once, also for tokens already registered.
      if (policy.issuers) tokens.retainTrusted(policy.issuers);
    },
    onLoaded: () => mcp?.changed(),
  });
  const reloadBundle = (trigger = 'reload'): Promise<boolean> => bundles.reload(trigger);
  await reloadBundle('start');
  // Distribution (policy.source): each new bundle is verified, written as the bundle file, then loaded.
  const bundleSource = await startBundleSource(config.policy.source, {
    bundleFile: () => bundles.bundleFile,
    check: (jws) => policy.check(jws),
    activate: (trigger) => reloadBundle(trigger),
    onRefused: (code, message, trigger) => bundles.refused(code, message, trigger),
    logger,
  });
  opened.push(['bundle source', () => bundleSource?.close()]);
  opened.push(['bundle loads', () => bundles.close()]);

  const pools = new Map<string, { pool: UpstreamPool; unitId: number | undefined }>();
  const tokenCache = new VerifiedTokenCache({ clock });
  const metrics = new GatewayMetrics({
    spool: () => {
      const s = audit.stats();
      return { depthRecords: audit.depthRecords(), bytes: s.bytes, nextSeq: s.nextSeq, ackedSeq: s.ackedSeq, durableSeq: s.durableSeq, failed: s.failed, full: s.full, dropped: s.dropped };
    },
    bundle: () => (policy.engine ? { revision: policy.engine.revision, createdAtMs: policy.engine.notBeforeMs } : undefined),
    upstreams: () => [...pools].map(([asset, { pool }]) => ({ asset, endpoint: pool.endpoint, up: pool.isUp, reconnects: pool.reconnects() })),
    tokenCache: () => ({ hits: tokenCache.hits, misses: tokenCache.misses }),
    now: () => clock.now(),
    freezesActive: () => freezes.active(clock.now()).length,
  });

  const approvals = await ApprovalStore.open({ stateDir: path.join(config.state_dir, 'approvals'), logger });
  opened.push(['approvals', () => approvals.close()]);
  const pipeline = new EnforcementPipeline({
    policy,
    tokens,
    audit,
    clock,
    logger,
    metrics,
    auditWhenFull: config.audit.when_full,
    interlocks: () => safety.interlocks(),
    approvals,
    freezes,
    memory,
  });

  // Adapters get the pipeline through a pass-through that keeps each workload's recent decisions.
  const recentDecisions = new RecentDecisions({ clock, maxWorkloads: config.identity.max_identities });
  const agentPipeline = recordingPipeline(pipeline, recentDecisions);

  for (const u of config.upstreams) {
    const pool = new UpstreamPool({ host: u.host, port: u.port, connections: u.connections, timeoutMs: u.timeout_ms, logger });
    pools.set(u.asset, { pool, unitId: u.unit_id });
  }
  opened.push(['upstream pools', () => pools.forEach(({ pool }) => pool.close())]);
  const route = upstreamRouter(pools, () => policy.engine);

  const recordRevocation = (r: Revocation) => appendSafely(revocationRecord(r));
  const trust = () => {
    const engine = policy.engine;
    const issuers = policy.issuers;
    if (engine === undefined || issuers === undefined) return undefined;
    return { issuers, audience: engine.audience, maxTokenTtlSec: engine.maxTokenTtlSec };
  };
  // One intake for every token presented (agent API, MCP, OPC UA sessions, static identities):
  // verified against the active bundle, unexpired, unrevoked, and recorded before it is used.
  const intake = new TokenIntake({
    trust,
    clock,
    leewaySec: config.identity.leeway_sec,
    revocations,
    cache: tokenCache,
    onAccepted: (subject) => appendSafely(tokenRecord({ kind: 'accepted', sessionId: '', subject, reason: 'ALLOWED' })),
    onRejected: (who, reason, detail, subject) => {
      appendSafely(
        tokenRecord({
          kind: 'rejected',
          sessionId: '',
          subject: subject ?? {
            workloadId: who.workloadId, owner: '', taskId: '', taskPurpose: '', jti: '', roles: [], scopes: [],
            assurance: 'none', certThumbprint: who.certThumbprint ?? '', issuer: '', expiresAtMs: 0, issuedAtMs: 0,
          },
          reason,
          detail: who.via === undefined ? detail : `${who.via}: ${detail}`,
        }),
      );
    },
  });

  // Handshake deadline and caps on every TLS listener, idle timeout on Modbus (docs/configuration.md, Hostile connections).
  const limits = connectionLimits(config);
  /** An HTTPS listener's refused handshakes, audited like the Modbus listener's, naming the listener. */
  const handshakes = (listenerName: string) => ({
    limits,
    onRefused: (r: HandshakeRefusal) => pipeline.violation({ remoteAddress: r.remoteAddress }, r.reason, r.code, `${listenerName}: ${r.message}`),
  });
  const listener = new ModbusTlsListener({
    host: config.listeners.modbus_tls.host,
    port: config.listeners.modbus_tls.port,
    tls: tlsFiles,
    pipeline: agentPipeline,
    route,
    logger,
    limits,
    limiter: new ConnectionLimiter({ maxPerWorkload: config.identity.max_connections_per_workload }),
  });
  opened.push(['modbus listener', () => listener.close()]);
  const modbus = await listener.listen();
  const plainConfig = config.listeners.modbus_plain;
  const staticIdentities = plainConfig === undefined ? undefined : StaticIdentityMap.fromConfig(plainConfig);
  const plainListener =
    plainConfig === undefined || staticIdentities === undefined
      ? undefined
      : new ModbusPlainListener({
          host: plainConfig.host,
          port: plainConfig.port,
          identities: staticIdentities,
          pipeline: agentPipeline,
          route,
          logger,
          limits,
          limiter: new ConnectionLimiter({ maxPerWorkload: config.identity.max_connections_per_workload }),
        });
  opened.push(['plaintext modbus listener', () => plainListener?.close()]);
  const modbusPlain = await plainListener?.listen();
  if (modbusPlain !== undefined) logger.warn({ modbusPlain }, 'plaintext Modbus listener with static source-address identities is on (assurance static-ip+token)');

  const agentApi = await startAgentApi(
    { host: config.listeners.agent_api.host, port: config.listeners.agent_api.port, tls: tlsFiles, handshakes: handshakes('agent_api') },
    { intake, tokens, revocations, onTaskCompleted: (_workloadId, r) => recordRevocation(r), recentDecisions, logger },
  );
  opened.push(['agent api', () => agentApi.close()]);

  // Legacy static-IP devices cannot reach the mTLS agent API: an operator registers their tokens.
  const registerStatic =
    staticIdentities === undefined
      ? undefined
      : (workloadId: string, jwt: string) =>
          registerStaticToken(
            { tokens, identities: staticIdentities, intake },
            workloadId,
            jwt,
          );

  const operatorApi =
    config.listeners.operator_api === undefined
      ? undefined
      : await startOperatorApi(
          {
            host: config.listeners.operator_api.host,
            port: config.listeners.operator_api.port,
            // The console's certificate sign-in: ask browsers for a client certificate only when some operator has one.
            tls: { cert, key, ...(config.console.enabled && config.console.certificate_operators.length > 0 ? { ca } : {}) },
            handshakes: handshakes('operator_api'),
          },
          {
            trust,
            revocations,
            tokens,
            clock,
            leewaySec: config.identity.leeway_sec,
            logger,
            onRevoked: (r) => recordRevocation(r),
            registerStaticToken: registerStatic,
            approvals,
            freezes: { freezes, clock, assetIds: () => policy.payload?.assets.map((a) => a.id) },
            console: config.console.enabled
              ? {
                  audit,
                  sessionTtlSec: config.console.session_ttl_sec,
                  certificateOperators: config.console.certificate_operators,
                  bundleChanges: () => bundles.changes,
                  upstreams: () => [
                    ...[...pools].map(([asset, { pool }]) => ({ asset, endpoint: `modbus://${pool.endpoint}`, up: pool.isUp, reconnects: pool.reconnects() })),
                    ...[...(opcua?.upstreams ?? [])].map(([asset, u]) => ({ asset, endpoint: config.opcua_upstreams.find((x) => x.asset === asset)?.endpoint_url ?? '', up: u.isUp, reconnects: 0 })),
                  ],
                  interlockInputs: () => {
                    const image = safety.image();
                    if (image === 'broken' || image === undefined) return image;
                    const now = clock.now();
                    return image.names.map((name, i) => ({ name, value: image.values[i]!, ageMs: image.ageMs(i, now), maxAgeMs: image.maxAgeMs[i]! }));
                  },
                  assetIds: () => policy.payload?.assets.map((a) => a.id) ?? [],
                }
              : undefined,
            bundle: {
              status: () => bundleStatus.view(clock.now()),
              reload: async (by) => {
                const ok = await reloadBundle(`operator ${by}`);
                const last = bundleStatus.lastLoad;
                return { ok, code: last?.code, message: last?.message };
              },
            },
            onApprovalDecided: (request, operator) => {
              if (request.status === 'approved' || request.status === 'rejected') appendSafely(approvalRequestRecord(request.status, request, operator.sub));
              // One of N approvals: recorded with who gave it, the request stays pending.
              else if (request.status === 'pending' && (request.approvals ?? []).length > 0) appendSafely(approvalRequestRecord('endorsed', { ...request, reason: request.approvals!.at(-1)!.reason }, operator.sub));
              logger.info({ approval: request.id, status: request.status, by: operator.sub, asset: request.assetId, workload: request.workloadId }, 'approval decided');
            },
            onRefused: (c) =>
              appendSafely(
                tokenRecord({ kind: 'rejected', sessionId: '', reason: c.reason, detail: `operator API ${c.method} ${c.path} by '${c.operatorSub}' from ${c.remoteAddress}: ${c.detail}` }),
              ),
          },
        );
  opened.push(['operator api', () => operatorApi?.close()]);

  // OPC UA agents present their JWT in ActivateSession: verified here exactly like a Modbus agent's
  // token on the agent API, and bound to the session (Session.subject) rather than the workload.
  if (config.listeners.opcua !== undefined && config.opcua !== undefined) {
    // Loaded only when configured: node-opcua costs ~1 s and ~100 MB, and prints to stdout on load.
    const { startOpcuaService } = await import('../../protocols/opcua/service.js');
    opcua = await startOpcuaService({
      host: config.listeners.opcua.host,
      port: config.listeners.opcua.port,
      certificateFile: config.opcua.cert,
      privateKeyFile: config.opcua.key,
      applicationUri: config.opcua.application_uri,
      trustedAgentCertificates: config.opcua.trusted_agent_certs,
      pkiDir: path.join(config.state_dir, 'opcua-pki'),
      upstreams: config.opcua_upstreams.map((u) => ({
        asset: u.asset,
        endpointUrl: u.endpoint_url,
        security: u.security,
        serverCertificate: u.server_cert,
        timeoutMs: u.timeout_ms,
        folderIdentifier: u.object_node,
        ...(u.browse !== undefined ? { browse: u.browse } : {}),
        maxNodes: u.max_nodes,
      })),
      jwtAsPassword: config.opcua.jwt_as_password,
      assets: policy.payload?.assets ?? [],
      pipeline: agentPipeline,
      clock,
      logger,
      verify: (jwt, who) => intake.accept(jwt, { workloadId: who.workloadId, certThumbprint: who.certThumbprint, certRole: who.certRole, assurance: 'mtls+token', via: 'OPC UA' }),
    });
    opened.push(['opcua', () => opcua?.close()]);
  }

  // MCP (issue 22): LLM agents' tool calls become Commands through the same pipeline and upstreams.
  mcp =
    config.listeners.mcp === undefined
      ? undefined
      : await (await import('../../protocols/mcp/start.js')).startMcpFront({
          config: config.listeners.mcp, tls: tlsFiles, pipeline: agentPipeline, route, opcua, opcuaUpstreams: config.opcua_upstreams, limits,
          policy, intake, tokens, clock, logger, gatewayId: config.gateway_id,
          interlockDetail: (cmd) => pipeline.tripOf(cmd)?.detail, registry: metrics.registry,
        });
  opened.push(['mcp', () => mcp?.close()]);
  // A revoked token's tool list is gone: its clients are told, its sessions closed.
  revocations.on('revoked', () => mcp?.changed());

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
  opened.push(['shipper', () => shipper?.close()]);

  let listenersUp = true;
  let sinkHalted = (): boolean => false;
  const ops =
    config.listeners.ops === undefined
      ? undefined
      : await startOpsApi(config.listeners.ops, {
          readiness: () => {
            const checks = {
              bundle: policy.engine !== undefined && policy.engine.expiresAtMs > clock.now(),
              // Unavailable while it refuses writes: full (until the collector acknowledges) or failed.
              audit: !audit.isFull(),
              // A sink stopped by what it found on its stream (docs/audit.md, A hostile bus).
              audit_sink: !sinkHalted(),
              listeners: listenersUp,
            };
            return { ready: checks.bundle && checks.audit && checks.audit_sink && checks.listeners, checks };
          },
          metrics: async () => ({ contentType: metrics.contentType, body: await metrics.text() }),
        });
  opened.push(['ops api', () => ops?.close()]);

  const nats = config.audit.nats;
  // The NATS client loaded only when configured (its code is ~4 MB of the process's memory).
  const natsSink =
    nats === undefined
      ? undefined
      : (await import('../audit/nats-sink.js')).startNatsSink({
          log: audit,
          gatewayId: config.gateway_id,
          site: nats.site,
          servers: nats.servers,
          stream: nats.stream,
          subjectPrefix: nats.subject_prefix,
          createStream: nats.create_stream,
          tls: nats.tls ? { ca, cert, key } : undefined,
          auth: { credsFile: nats.creds_file, nkeySeedFile: nats.nkey_seed_file },
          logger,
        });
  // docs/audit.md, A hostile bus: each foreign message is an audit record (the sink writes it), a log line and a count.
  natsSink?.on('alert', (a: NatsSinkAlert) => metrics.sinkAlert(a.kind));
  sinkHalted = () => natsSink?.stats().halted ?? false;
  opened.push(['nats sink', () => natsSink?.close()]);

  logger.info(
    { modbus, agentApi: { host: config.listeners.agent_api.host, port: agentApi.port }, ops: ops && { host: config.listeners.ops?.host, port: ops.port }, gateway: config.gateway_id },
    'gateway listening',
  );

  return {
    modbus,
    ...(modbusPlain !== undefined ? { modbusPlain } : {}),
    ...(registerStatic !== undefined ? { registerStaticToken: registerStatic } : {}),
    agentApi: { host: config.listeners.agent_api.host, port: agentApi.port },
    ops: ops && config.listeners.ops && { host: config.listeners.ops.host, port: ops.port },
    metrics,
    pipeline,
    audit,
    policy,
    tokens,
    revocations,
    approvals,
    freezes,
    processImage: () => {
      const image = safety.image();
      return image === 'broken' ? undefined : image;
    },
    operatorApi: operatorApi && config.listeners.operator_api && { host: config.listeners.operator_api.host, port: operatorApi.port },
    opcua: opcua && { endpointUrl: opcua.endpointUrl, whenReady: opcua.whenReady },
    ...(mcp !== undefined ? { mcp: mcp.address } : {}),
    upstreamsReady: async () => {
      await Promise.all([...pools.values()].map((p) => p.pool.ready()));
      // Interlocked commands are refused until their inputs have been read once.
      await safety.pollNow();
    },
    reloadBundle,
    bundleStatus,
    recentDecisions,
    reload: async (next: GatewayConfig) => {
      const needsRestart: string[] = (['listeners', 'upstreams', 'tls', 'audit', 'state_dir', 'gateway_id', 'opcua', 'opcua_upstreams'] as const).filter(
        (k) => JSON.stringify(next[k]) !== JSON.stringify(config[k]),
      );
      if (JSON.stringify(next.policy.source) !== JSON.stringify(config.policy.source)) needsRestart.push('policy.source');
      if (needsRestart.length > 0) logger.warn({ fields: needsRestart }, 'config changes that need a restart were not applied');
      policy.setPinnedKeys(await readPinnedKeys(next.policy.trusted_keys, next.policy.retired_keys));
      // A bundle refused under the old keys may verify under the new ones: download it again.
      if (bundleSource instanceof UrlBundleSource) bundleSource.forgetEtag();
      bundles.bundleFile = next.policy.bundle_file;
      return reloadBundle('sighup');
    },
    close: async (drainMs = 0, onStep = () => undefined) => {
      listenersUp = false;
      // In this order: stop taking work, let what is in flight finish, then flush the records.
      const bundleLoads = bundles.close();
      const steps: Array<[string, () => unknown]> = [
        // A reload in flight (SIGHUP, operator, distribution) finishes before anything closes.
        ['bundle loads', () => bundleLoads],
        ['bundle source', () => bundleSource?.close()],
        ['mcp', () => mcp?.close()],
        ['opcua', () => opcua?.close()],
        ['modbus listener (drain)', () => listener.close(drainMs)],
        ['plaintext modbus listener (drain)', () => plainListener?.close(drainMs)],
        ['agent api', () => agentApi.close()],
        ['ops api', () => ops?.close()],
        ['operator api', () => operatorApi?.close()],
        ['upstream pools', () => pools.forEach(({ pool }) => pool.close())],
        ['shipper', () => shipper?.close()],
        ['nats sink', () => natsSink?.close()],
        ['process image', () => safety.close()],
        ['audit log', () => audit.close()],
        ['revocations', () => revocations.close()],
        ['approvals', () => approvals.close()],
        ['freezes', () => freezes.close()],
      ];
      for (const [name, step] of steps) {
        onStep(name);
        await step();
      }
    },
  };
}
