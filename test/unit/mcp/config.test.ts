// The `listeners.mcp` block: defaults a plant engineer can rely on, and mistakes named by file,
// line and field.
import { describe, expect, it } from 'vitest';
import { parseGatewayConfig } from '../../../src/gateway/config.js';

const config = (mcp: string) =>
  [
    'gateway_id: gw1',
    'state_dir: state',
    'tls: { ca: ca.pem, cert: gw.pem, key: gw.key }',
    'listeners:',
    '  modbus_tls: { host: 127.0.0.1, port: 0 }',
    '  agent_api: { host: 127.0.0.1, port: 0 }',
    `  mcp: ${mcp}`,
    'upstreams: [{ asset: plc1, host: 127.0.0.1, port: 502 }]',
    'audit: { spool_dir: spool }',
    'policy: { bundle_file: bundle.jws, trusted_keys: [k.jwks.json] }',
    '',
  ].join('\n');

describe('the MCP listener in the gateway config', () => {
  it('fills safe defaults: no browser origins, 64 KiB bodies, 50 requests per second per token', () => {
    const c = parseGatewayConfig(config('{ host: 10.0.0.1, port: 8444 }'), '/etc/plantgate/gateway.yaml');
    expect(c.listeners.mcp).toEqual({
      host: '10.0.0.1', port: 8444, allowed_origins: [], max_body_bytes: 65536, rate_limit: { count: 50, per_sec: 1 },
      require_client_certificate: false, max_sessions: 1000, session_idle_ms: 1_800_000,
    });
  });

  it('reads a rate such as 600/1m', () => {
    expect(parseGatewayConfig(config('{ host: 10.0.0.1, port: 8444, rate_limit: 600/1m }'), '/g.yaml').listeners.mcp?.rate_limit).toEqual({ count: 600, per_sec: 60 });
  });

  it('refuses a rate it cannot read, naming the field', () => {
    expect(() => parseGatewayConfig(config('{ host: 10.0.0.1, port: 8444, rate_limit: fast }'), '/g.yaml')).toThrow(/g\.yaml:\d+:\d+: listeners\.mcp\.rate_limit: 'fast' is not a rate/);
  });

  it('needs the public resource URL when listening on a wildcard address', () => {
    expect(() => parseGatewayConfig(config('{ host: 0.0.0.0, port: 8444 }'), '/g.yaml')).toThrow(/listeners\.mcp\.resource: listening on 0\.0\.0\.0 needs the public resource URL/);
    const c = parseGatewayConfig(config('{ host: 0.0.0.0, port: 8444, resource: "https://gw.plant.example:8444/mcp" }'), '/g.yaml');
    expect(c.listeners.mcp?.resource).toBe('https://gw.plant.example:8444/mcp');
  });

  it('refuses a plain-http resource URL', () => {
    expect(() => parseGatewayConfig(config('{ host: 10.0.0.1, port: 8444, resource: "http://gw/mcp" }'), '/g.yaml')).toThrow(/listeners\.mcp\.resource: must be an https:\/\/ URL/);
  });
});
