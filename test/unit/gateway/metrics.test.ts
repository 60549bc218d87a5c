// The gateway's per-command counters and histograms are its own light classes fed to prom-client's
// registry. A Prometheus server must see exactly what prom-client's own Counter and Histogram would
// print for the same commands, or dashboards and alerts built on the names break silently.
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { Command, Decision } from '../../../src/core/command.js';
import { GatewayMetrics } from '../../../src/gateway/metrics.js';

const sources = {
  spool: () => ({ depthRecords: 0, bytes: 0, nextSeq: 0, ackedSeq: 0, durableSeq: 0, failed: false }),
  bundle: () => undefined,
  upstreams: () => [],
  tokenCache: () => ({ hits: 0, misses: 0 }),
  now: () => 0,
};

function cmd(assetId: string): Command {
  return { sessionId: 's', protocol: 'modbus', assetId, operation: 'read', functionCode: 3, targets: [], points: [] };
}
const allow: Decision = { effect: 'allow', reason: 'ALLOWED', ruleId: 'r', bundleRevision: 1, durable: false };
const denied: Decision = { effect: 'deny', reason: 'NO_TOKEN', ruleId: '', bundleRevision: 1, durable: false };

/** The same observations through prom-client's own metrics, as the reference exposition. */
async function reference(observe: (m: { commands: Counter; outcomes: Counter; decision: Histogram; upstream: Histogram }) => void): Promise<string> {
  const registry = new Registry();
  const registers = [registry];
  const m = {
    commands: new Counter({ name: 'plantgate_commands_total', help: 'Commands decided, by protocol, asset, effect and reason code', labelNames: ['protocol', 'asset', 'effect', 'reason'], registers }),
    outcomes: new Counter({ name: 'plantgate_command_outcomes_total', help: 'What the PLC answered to allowed commands', labelNames: ['protocol', 'asset', 'status'], registers }),
    decision: new Histogram({
      name: 'plantgate_decision_seconds',
      help: 'Time from a decoded command to its decision (identity, policy, audit record queued)',
      labelNames: ['protocol'],
      buckets: [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025],
      registers,
    }),
    upstream: new Histogram({
      name: 'plantgate_upstream_seconds',
      help: 'Round trip to the PLC of allowed commands',
      labelNames: ['protocol', 'asset'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
  };
  observe(m);
  return registry.metrics();
}

function section(text: string, name: string): string {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}`) || l.startsWith(`# HELP ${name} `) || l.startsWith(`# TYPE ${name} `))
    .join('\n');
}

describe('gateway metrics exposition', () => {
  it('prints commands, outcomes and latency histograms exactly as prom-client would', async () => {
    const metrics = new GatewayMetrics(sources, { defaultMetrics: false });
    const latencies = [0.000003, 0.000005, 0.00002, 0.0007, 0.03, 2];
    for (const s of latencies) metrics.decided(cmd('plc1'), allow, s);
    metrics.decided(cmd('plc2'), denied, 0.00001);
    metrics.decided(cmd(''), denied, 0.00001);
    for (const us of [50, 100, 400, 3000, 2_000_000]) metrics.outcome(cmd('plc1'), { status: 'ok', latencyUs: us });
    metrics.outcome(cmd('plc1'), { status: 'upstream_timeout', latencyUs: 1_000_000 });
    const ours = await metrics.text();

    const theirs = await reference((m) => {
      for (const s of latencies) {
        m.commands.labels('modbus', 'plc1', 'allow', 'ALLOWED').inc();
        m.decision.labels('modbus').observe(s);
      }
      m.commands.labels('modbus', 'plc2', 'deny', 'NO_TOKEN').inc();
      m.decision.labels('modbus').observe(0.00001);
      m.commands.labels('modbus', 'unknown', 'deny', 'NO_TOKEN').inc();
      m.decision.labels('modbus').observe(0.00001);
      for (const us of [50, 100, 400, 3000, 2_000_000]) {
        m.outcomes.labels('modbus', 'plc1', 'ok').inc();
        m.upstream.labels('modbus', 'plc1').observe(us / 1e6);
      }
      m.outcomes.labels('modbus', 'plc1', 'upstream_timeout').inc();
      m.upstream.labels('modbus', 'plc1').observe(1);
    });
    for (const name of ['plantgate_commands_total', 'plantgate_command_outcomes_total', 'plantgate_decision_seconds', 'plantgate_upstream_seconds']) {
      expect(section(ours, name), name).toBe(section(theirs, name));
    }
    expect(ours).toContain('plantgate_commands_total{protocol="modbus",asset="plc1",effect="allow",reason="ALLOWED"} 6');
    expect(ours).toContain('plantgate_decision_seconds_bucket{le="+Inf",protocol="modbus"} 8');
  });
});
