import { describe, expect, it } from 'vitest';
import { parseGatewayConfig } from '../../../src/gateway/config.js';

const base = (policyExtra: string[]) =>
  [
    'gateway_id: gw1',
    'state_dir: state',
    'tls: { ca: ca.pem, cert: gw.pem, key: gw.key }',
    'listeners: { modbus_tls: { host: 127.0.0.1, port: 0 }, agent_api: { host: 127.0.0.1, port: 0 } }',
    'upstreams: [{ asset: plc1, host: 127.0.0.1, port: 502 }]',
    'audit: { spool_dir: spool }',
    'policy:',
    '  bundle_file: bundle.jws',
    '  trusted_keys: [k1.jwks.json, k2.jwks.json]',
    ...policyExtra,
    '',
  ].join('\n');

describe('policy lifecycle settings in the gateway config', () => {
  it('resolves a watched file source and the retired keys', () => {
    const c = parseGatewayConfig(base(['  retired_keys: [policy-2025]', '  source: { file: incoming/bundle.jws }']), '/etc/plantgate/gateway.yaml');
    expect(c.policy.retired_keys).toEqual(['policy-2025']);
    expect(c.policy.source).toEqual({ file: '/etc/plantgate/incoming/bundle.jws', watch: true, debounce_ms: 250 });
    expect(c.policy.trusted_keys).toEqual(['/etc/plantgate/k1.jwks.json', '/etc/plantgate/k2.jwks.json']);
  });

  it('fills the URL source defaults and resolves its CA', () => {
    const c = parseGatewayConfig(base(['  source: { url: "https://bundles.plant.example/a.jws", ca: ca.pem }']), '/etc/plantgate/gateway.yaml');
    expect(c.policy.source).toEqual({
      url: 'https://bundles.plant.example/a.jws', ca: '/etc/plantgate/ca.pem', poll_ms: 60_000, timeout_ms: 10_000, max_bytes: 16 * 1024 * 1024, max_backoff_ms: 600_000,
    });
    expect(c.policy.retired_keys).toEqual([]);
  });

  it('refuses a plain-http distribution point with the file and line', () => {
    expect(() => parseGatewayConfig(base(['  source: { url: "http://bundles.plant.example/a.jws" }']), '/etc/plantgate/gateway.yaml')).toThrow(
      /gateway\.yaml:\d+:\d+: policy\.source/,
    );
  });
});
