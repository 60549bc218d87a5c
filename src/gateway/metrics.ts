// Prometheus metrics of one gateway (prom-client). Counters on the per-command path are looked up
// through small nested maps of pre-labelled children, so a command costs a few map reads and an
// increment, not a label-string build. Gauges that mirror other parts' state (spool depth, bundle
// age, upstream health) are read only when Prometheus scrapes.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Command, Decision } from '../core/command.js';
import type { Outcome } from '../core/pipeline.js';

export interface MetricSources {
  spool(): { depthRecords: number; bytes: number; nextSeq: number; ackedSeq: number; durableSeq: number; failed: boolean };
  bundle(): { revision: number; createdAtMs: number } | undefined;
  upstreams(): Array<{ asset: string; endpoint: string; up: boolean; reconnects: number }>;
  tokenCache(): { hits: number; misses: number };
  now(): number;
}

/**
 * Children of a labelled metric cached in nested maps keyed by label values, so the hot path never
 * builds a label key string or object.
 */
class Children<C> {
  private readonly root = new Map<string, unknown>();
  constructor(private readonly make: (values: string[]) => C) {}
  get(a: string, b?: string, c?: string): C {
    const keys = b === undefined ? [a] : c === undefined ? [a, b] : [a, b, c];
    let node = this.root;
    for (let i = 0; i < keys.length - 1; i++) {
      let next = node.get(keys[i]) as Map<string, unknown> | undefined;
      if (next === undefined) node.set(keys[i], (next = new Map()));
      node = next;
    }
    const last = keys[keys.length - 1];
    let child = node.get(last) as C | undefined;
    if (child === undefined) node.set(last, (child = this.make(keys)));
    return child;
  }
}

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly commands: Counter<'protocol' | 'asset' | 'effect' | 'reason'>;
  private readonly outcomes: Counter<'protocol' | 'asset' | 'status'>;
  private readonly decisionSeconds: Histogram<'protocol'>;
  private readonly upstreamSeconds: Histogram<'protocol' | 'asset'>;
  private readonly commandChildren: Children<{ inc(): void }>;
  private readonly outcomeChildren: Children<{ inc(): void }>;
  private readonly decisionChildren: Children<{ observe(v: number): void }>;
  private readonly upstreamChildren: Children<{ observe(v: number): void }>;

  constructor(sources: MetricSources, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'plantgate_process_' });
    this.commands = new Counter({
      name: 'plantgate_commands_total',
      help: 'Commands decided, by protocol, asset, effect and reason code',
      labelNames: ['protocol', 'asset', 'effect', 'reason'],
      registers,
    });
    this.outcomes = new Counter({
      name: 'plantgate_command_outcomes_total',
      help: 'What the PLC answered to allowed commands',
      labelNames: ['protocol', 'asset', 'status'],
      registers,
    });
    this.decisionSeconds = new Histogram({
      name: 'plantgate_decision_seconds',
      help: 'Time from a decoded command to its decision (identity, policy, audit record queued)',
      labelNames: ['protocol'],
      buckets: [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025],
      registers,
    });
    this.upstreamSeconds = new Histogram({
      name: 'plantgate_upstream_seconds',
      help: 'Round trip to the PLC of allowed commands',
      labelNames: ['protocol', 'asset'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    // Effect follows from the reason (ALLOWED is the only allow), so it is not a key of its own.
    this.commandChildren = new Children(([protocol, asset, reason]) =>
      this.commands.labels(protocol, asset || 'unknown', reason === 'ALLOWED' ? 'allow' : 'deny', reason),
    );
    this.outcomeChildren = new Children(([protocol, asset, status]) => this.outcomes.labels(protocol, asset, status));
    this.decisionChildren = new Children(([protocol]) => this.decisionSeconds.labels(protocol));
    this.upstreamChildren = new Children(([protocol, asset]) => this.upstreamSeconds.labels(protocol, asset));
    new Gauge({
      name: 'plantgate_spool_records',
      help: 'Audit records in the spool not yet acknowledged by the collector',
      registers,
      collect() {
        this.set(sources.spool().depthRecords);
      },
    });
    new Gauge({
      name: 'plantgate_spool_bytes',
      help: 'Bytes in the audit spool',
      registers,
      collect() {
        this.set(sources.spool().bytes);
      },
    });
    new Gauge({
      name: 'plantgate_shipper_lag_records',
      help: 'Records written but not yet acknowledged by the collector',
      registers,
      collect() {
        const s = sources.spool();
        this.set(Math.max(0, s.nextSeq - 1 - s.ackedSeq));
      },
    });
    new Gauge({
      name: 'plantgate_audit_failed',
      help: '1 when the audit spool refuses appends (every command is denied AUDIT_UNAVAILABLE)',
      registers,
      collect() {
        this.set(sources.spool().failed ? 1 : 0);
      },
    });
    new Gauge({
      name: 'plantgate_bundle_revision',
      help: 'Revision of the active policy bundle (0 when none)',
      registers,
      collect() {
        this.set(sources.bundle()?.revision ?? 0);
      },
    });
    new Gauge({
      name: 'plantgate_bundle_age_seconds',
      help: 'Age of the active policy bundle since it was issued',
      registers,
      collect() {
        const b = sources.bundle();
        this.set(b === undefined ? 0 : Math.max(0, (sources.now() - b.createdAtMs) / 1000));
      },
    });
    new Gauge({
      name: 'plantgate_upstream_up',
      help: '1 when at least one connection to the PLC endpoint is up',
      labelNames: ['asset', 'endpoint'],
      registers,
      collect() {
        for (const u of sources.upstreams()) this.labels(u.asset, u.endpoint).set(u.up ? 1 : 0);
      },
    });
    new Gauge({
      name: 'plantgate_upstream_reconnects',
      help: 'Reconnects to the PLC endpoint since start',
      labelNames: ['asset', 'endpoint'],
      registers,
      collect() {
        for (const u of sources.upstreams()) this.labels(u.asset, u.endpoint).set(u.reconnects);
      },
    });
    new Gauge({
      name: 'plantgate_token_cache_hit_ratio',
      help: 'Share of token presentations answered from the verified-token cache',
      registers,
      collect() {
        const { hits, misses } = sources.tokenCache();
        this.set(hits + misses === 0 ? 0 : hits / (hits + misses));
      },
    });
  }

  /** Per command: a few map reads, one increment and one histogram observation. */
  decided(cmd: Command, decision: Decision, seconds: number): void {
    this.commandChildren.get(cmd.protocol, cmd.assetId, decision.reason).inc();
    this.decisionChildren.get(cmd.protocol).observe(seconds);
  }

  outcome(cmd: Command, outcome: Outcome): void {
    this.outcomeChildren.get(cmd.protocol, cmd.assetId, outcome.status).inc();
    this.upstreamChildren.get(cmd.protocol, cmd.assetId).observe(outcome.latencyUs / 1e6);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
