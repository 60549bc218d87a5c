// The OPC UA blocks of the gateway config (docs/configuration.md, "OPC UA"): defaults, relative
// paths resolved against the config file, and mistakes named by file, line and field.
import { describe, expect, it } from 'vitest';
import { parseGatewayConfig } from '../../../src/gateway/config.js';

const config = (opcua: string[]) =>
  [
    'gateway_id: gw1',
    'state_dir: state',
    'tls: { ca: ca.pem, cert: gw.pem, key: gw.key }',
    'listeners: { modbus_tls: { host: 127.0.0.1, port: 0 }, agent_api: { host: 127.0.0.1, port: 0 }, opcua: { host: 127.0.0.1, port: 4840 } }',
    'audit: { spool_dir: spool }',
    'policy: { bundle_file: bundle.jws, trusted_keys: [k.jwks.json] }',
    ...opcua,
    '',
  ].join('\n');

describe('the OPC UA blocks of the gateway config', () => {
  it('takes trusted agent certificates as paths or pinned to a workload, and browse roots with defaults', () => {
    const c = parseGatewayConfig(
      config([
        'opcua:',
        '  application_uri: urn:plantgate:gateway:gw1',
        '  cert: ua/gateway.pem',
        '  key: ua/gateway.key',
        '  trusted_agent_certs: [ua/agents/optimizer.pem, { cert: ua/hmi.der, workload: "spiffe://plant.example/hmi/panel1" }]',
        'opcua_upstreams:',
        '  - { asset: line1, endpoint_url: "opc.tcp://10.0.0.5:4840", server_cert: ua/line1.der, browse: [/Line1, "nsu=urn:acme:plc:line1;s=Line2"] }',
      ]),
      '/etc/plantgate/gateway.yaml',
    );
    expect(c.opcua!.trusted_agent_certs).toEqual(['/etc/plantgate/ua/agents/optimizer.pem', { cert: '/etc/plantgate/ua/hmi.der', workload: 'spiffe://plant.example/hmi/panel1' }]);
    expect(c.opcua!.jwt_as_password).toBe(false);
    expect(c.opcua_upstreams[0]).toMatchObject({ security: 'SignAndEncrypt', timeout_ms: 2000, max_nodes: 10_000, browse: ['/Line1', 'nsu=urn:acme:plc:line1;s=Line2'], server_cert: '/etc/plantgate/ua/line1.der' });
  });

  it('names a pinned certificate whose workload is no SPIFFE ID, and a browse root that is neither a path nor a NodeId', () => {
    expect(() =>
      parseGatewayConfig(
        config(['opcua: { application_uri: "urn:gw", cert: g.pem, key: g.key, trusted_agent_certs: [{ cert: hmi.der, workload: urn:acme:hmi }] }', 'opcua_upstreams: [{ asset: a, endpoint_url: "opc.tcp://h:4840", server_cert: s.der }]']),
        '/etc/plantgate/gateway.yaml',
      ),
    ).toThrow(/gateway\.yaml:7:\d+: opcua\.trusted_agent_certs\[0\]\.workload: a SPIFFE ID/);
    expect(() =>
      parseGatewayConfig(
        config(['opcua: { application_uri: "urn:gw", cert: g.pem, key: g.key }', 'opcua_upstreams: [{ asset: a, endpoint_url: "opc.tcp://h:4840", server_cert: s.der, browse: [Line1] }]']),
        '/etc/plantgate/gateway.yaml',
      ),
    ).toThrow(/gateway\.yaml:8:\d+: opcua_upstreams\[0\]\.browse\[0\]: a browse path from Objects/);
  });
});
