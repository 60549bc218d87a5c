// A realistic command decision for the audit unit tests: a delegated agent writing a setpoint.
import type { Command, Decision, Subject } from '../../../src/core/command.js';

export const subject: Subject = {
  workloadId: 'spiffe://plant.example/agent/optimizer',
  owner: 'team-energy',
  taskId: 'T-42',
  taskPurpose: 'tune pump schedule',
  jti: 'jti-1',
  actSub: ['alice@plant.example'],
  roles: ['operator-agent'],
  scopes: ['plc:write'],
  assurance: 'mtls+token',
  certThumbprint: 'abc',
  issuer: 'https://issuer.example',
  expiresAtMs: 1_768_478_700_000,
  issuedAtMs: 1_768_478_400_000,
};

export const cmd: Command = {
  sessionId: 's-1',
  protocol: 'modbus',
  assetId: 'pump1',
  operation: 'write',
  functionCode: 6,
  targets: [{ table: 'holding', address: 40, count: 1 }],
  points: ['pump1.speed_setpoint'],
  rawValues: [1500],
  values: { 'pump1.speed_setpoint': 150.0 },
};

export const allow: Decision = { effect: 'allow', reason: 'ALLOWED', ruleId: 'r-7', bundleRevision: 12, durable: true };
