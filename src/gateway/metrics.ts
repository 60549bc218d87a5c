// Prometheus metrics of one gateway (prom-client's registry and exposition). The per-command
// counters and histograms are our own small classes below, so a command costs a few map reads and
// an increment, not a label-object hash. Gauges that mirror other parts' state (spool depth, bundle
// age, upstream health) are read only when Prometheus scrapes.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Command, Decision } from '../core/command.js';
import type { Outcome } from '../core/pipeline.js';

export interface MetricSources {
  spool(): { depthRecords: number; bytes: number; nextSeq: number; ackedSeq: number; durableSeq: number; failed: boolean; full?: boolean; dropped?: number };
  bundle(): { revision: number; createdAtMs: number } | undefined;
  upstreams(): Array<{ asset: string; endpoint: string; up: boolean; reconnects: number }>;
  tokenCache(): { hits: number; misses: number };
  now(): number;
  /** Emergency freezes in force (docs/operator.md). */
  freezesActive?(): number;
}

/**
 * Labelled counters and histograms whose per-command update is a few map reads and an array
 * increment. prom-client's own labelled metrics validate and hash the label object on every inc()
 * and observe(), even through a labels() child (~4 % of the gateway's CPU under load). These keep
 * each series in nested maps keyed by up to three label values and give prom-client's registry, at
 * scrape time, the values its own metrics would, so the exposition is still prom-client's.
 */
interface Series {
  labels: Record<string, string>;
  /** Counter: [value]. Histogram: one count per bucket (not cumulative), then the sum. */
  values: Float64Array;
}

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

abstract class LabelledMetric {
  private readonly root = new Map<string, unknown>();
  private readonly all: Series[] = [];
  readonly aggregator = 'sum' as const;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    /** The labels of a new series from its key values. */
    private readonly labelsOf: (a: string, b: string, c: string) => Record<string, string>,
    private readonly depth: 1 | 2 | 3,
    private readonly width: number,
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }

  protected series(a: string, b = '', c = ''): Series {
    let node = this.root;
    if (this.depth > 1) node = child(node, a);
    if (this.depth > 2) node = child(node, b);
    const last = this.depth === 1 ? a : this.depth === 2 ? b : c;
    let s = node.get(last) as Series | undefined;
    if (s === undefined) {
      s = { labels: this.labelsOf(a, b, c), values: new Float64Array(this.width) };
      node.set(last, s);
      this.all.push(s);
    }
    return s;
  }

  protected abstract valuesOf(s: Series, out: MetricValue[]): void;

  /** What prom-client's registry reads at scrape time (the shape of its own metrics' get()). */
  get(): { name: string; help: string; type: string; aggregator: 'sum'; values: MetricValue[] } {
    const values: MetricValue[] = [];
    for (const s of this.all) this.valuesOf(s, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const s of this.all) s.values.fill(0);
  }
}

function child(node: Map<string, unknown>, key: string): Map<string, unknown> {
  let next = node.get(key) as Map<string, unknown> | undefined;
  if (next === undefined) node.set(key, (next = new Map()));
  return next;
}

class LabelledCounter extends LabelledMetric {
  constructor(name: string, help: string, labelsOf: (a: string, b: string, c: string) => Record<string, string>, depth: 1 | 2 | 3, registry: Registry) {
    super(name, help, 'counter', labelsOf, depth, 1, registry);
  }
  inc(a: string, b?: string, c?: string): void {
    this.series(a, b, c).values[0]++;
  }
  protected valuesOf(s: Series, out: MetricValue[]): void {
    out.push({ labels: s.labels, value: s.values[0] });
  }
}

class LabelledHistogram extends LabelledMetric {
  constructor(
    name: string,
    help: string,
    private readonly bounds: readonly number[],
    labelsOf: (a: string, b: string, c: string) => Record<string, string>,
    depth: 1 | 2 | 3,
    registry: Registry,
  ) {
    // One slot per bound, one for +Inf, one for the sum.
    super(name, help, 'histogram', labelsOf, depth, bounds.length + 2, registry);
  }
  observe(v: number, a: string, b?: string): void {
    const values = this.series(a, b).values;
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && v > bounds[i]) i++;
    values[i]++;
    values[bounds.length + 1] += v;
  }
  protected valuesOf(s: Series, out: MetricValue[]): void {
    const n = this.bounds.length;
    let cumulative = 0;
    for (let i = 0; i <= n; i++) {
      cumulative += s.values[i];
      out.push({ labels: { le: i < n ? this.bounds[i] : '+Inf', ...s.labels }, value: cumulative, metricName: `${this.name}_bucket` });
    }
    out.push({ labels: s.labels, value: s.values[n + 1], metricName: `${this.name}_sum` });
    out.push({ labels: s.labels, value: cumulative, metricName: `${this.name}_count` });
  }
}

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly commands: LabelledCounter;
  private readonly outcomes: LabelledCounter;
  private readonly decisionSeconds: LabelledHistogram;
  private readonly upstreamSeconds: LabelledHistogram;
  private readonly freezeChanges: Counter<'kind'>;
  private readonly sinkAlerts: Counter<'kind'>;

  constructor(sources: MetricSources, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'plantgate_process_' });
    // Effect follows from the reason (ALLOWED is the only allow), so it is not a key of its own.
    this.commands = new LabelledCounter(
      'plantgate_commands_total',
      'Commands decided, by protocol, asset, effect and reason code',
      (protocol, asset, reason) => ({ protocol, asset: asset || 'unknown', effect: reason === 'ALLOWED' ? 'allow' : 'deny', reason }),
      3,
      this.registry,
    );
    this.outcomes = new LabelledCounter(
      'plantgate_command_outcomes_total',
      'What the PLC answered to allowed commands',
      (protocol, asset, status) => ({ protocol, asset, status }),
      3,
      this.registry,
    );
    this.decisionSeconds = new LabelledHistogram(
      'plantgate_decision_seconds',
      'Time from a decoded command to its decision (identity, policy, audit record queued)',
      [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025],
      (protocol) => ({ protocol }),
      1,
      this.registry,
    );
    this.upstreamSeconds = new LabelledHistogram(
      'plantgate_upstream_seconds',
      'Round trip to the PLC of allowed commands',
      [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      (protocol, asset) => ({ protocol, asset }),
      2,
      this.registry,
    );
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
      name: 'plantgate_audit_full',
      help: '1 while the audit spool refuses writes for want of room (writes, calls and diagnostics are denied AUDIT_UNAVAILABLE)',
      registers,
      collect() {
        this.set(sources.spool().full ? 1 : 0);
      },
    });
    let droppedSeen = 0;
    new Counter({
      name: 'plantgate_audit_records_dropped_total',
      help: 'Audit records a full spool could not take; each is counted in a RecordsDroppedEvent record once there is room',
      registers,
      collect() {
        // The log counts; the counter follows it at each scrape.
        const total = sources.spool().dropped ?? 0;
        if (total > droppedSeen) this.inc(total - droppedSeen);
        droppedSeen = Math.max(droppedSeen, total);
      },
    });
    this.sinkAlerts = new Counter({
      name: 'plantgate_audit_sink_alerts_total',
      help: 'Messages on the audit sink\'s stream that were not this gateway\'s records (each also an audit SinkAlertEvent), by kind',
      labelNames: ['kind'],
      registers,
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
    this.freezeChanges = new Counter({
      name: 'plantgate_freeze_changes_total',
      help: 'Emergency freeze changes: frozen, unfreeze_requested (two-person rule), unfrozen, expired',
      labelNames: ['kind'],
      registers,
    });
    new Gauge({
      name: 'plantgate_freezes_active',
      help: 'Emergency freezes in force',
      registers,
      collect() {
        this.set(sources.freezesActive?.() ?? 0);
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
    this.commands.inc(cmd.protocol, cmd.assetId, decision.reason);
    this.decisionSeconds.observe(seconds, cmd.protocol);
  }

  /** An emergency freeze changed (rare: an operator's action). */
  /** A foreign message on the audit sink's stream (docs/audit.md, A hostile bus). */
  sinkAlert(kind: string): void {
    this.sinkAlerts.inc({ kind });
  }

  freezeChanged(kind: string): void {
    this.freezeChanges.inc({ kind });
  }

  outcome(cmd: Command, outcome: Outcome): void {
    this.outcomes.inc(cmd.protocol, cmd.assetId, outcome.status);
    this.upstreamSeconds.observe(outcome.latencyUs / 1e6, cmd.protocol, cmd.assetId);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
