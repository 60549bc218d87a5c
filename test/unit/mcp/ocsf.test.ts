// A SOC analyst's view of an MCP tool call: the OCSF API Activity names the MCP client app, the
// tool and its arguments, and still carries the Command it became (protocol, points, values).
import { describe, expect, it } from 'vitest';
import { toOcsf } from '../../../src/collector/ocsf.js';

const record = {
  gatewayId: 'gw-1',
  seq: 41,
  timeUnixMs: 1_780_000_000_000,
  hash: 'abc',
  decision: {
    subject: { workloadId: 'spiffe://plant.example/agent/optimizer', owner: 'alice@plant.example', jti: 'j-1', assurance: 'none' },
    command: { sessionId: 'mcp-3', protocol: 'modbus', assetId: 'plc1', operation: 'write', functionCode: 6, points: ['tank1.setpoint'], values: { 'tank1.setpoint': 95 } },
    decision: { effect: 'DENY', reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'optimizer-setpoint', bundleRevision: 3 },
    mcp: { clientName: 'claude-code', clientVersion: '2.1.0', protocolVersion: '2025-11-25', mcpSessionId: 'mcp-3', tool: 'write_plc1_tank1_setpoint', arguments: '{"value":95}' },
  },
};

describe('OCSF mapping of MCP tool calls', () => {
  it('maps a refused MCP write as API Activity: Update by the MCP client app, with the tool and arguments', () => {
    const e = toOcsf(record)!;
    expect(e).toMatchObject({
      class_uid: 6003,
      activity_id: 3,
      status: 'Failure',
      status_code: 'VALUE_OUT_OF_BOUNDS',
      actor: { app_name: 'claude-code 2.1.0', app_uid: 'spiffe://plant.example/agent/optimizer', user: { uid: 'alice@plant.example', type: 'User' } },
      api: { operation: 'tools/call write_plc1_tank1_setpoint', service: { name: 'mcp', version: '2025-11-25' }, request: { data: { tool: 'write_plc1_tank1_setpoint', arguments: '{"value":95}' } } },
      resources: [{ uid: 'plc1', type: 'asset' }, { uid: 'tank1.setpoint', type: 'point', data: { value: 95 } }],
      unmapped: { command_protocol: 'modbus', function_code: 6 },
    });
  });

  it('leaves a Modbus agent\'s command mapped as before (no MCP fields)', () => {
    const { mcp: _mcp, ...decision } = record.decision;
    const e = toOcsf({ ...record, decision })!;
    expect(e.api).toEqual({ operation: 'modbus fc 6 write', service: { name: 'modbus' }, request: { uid: '0' } });
    expect(e.actor.app_name).toBe('spiffe://plant.example/agent/optimizer');
  });
});
