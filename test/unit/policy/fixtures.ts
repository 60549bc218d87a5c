// A hand-built payload for unit tests of the bundle signer and the engine (no files involved).
// Its point map mirrors fixtures/plants/water-treatment.yaml plus a 32-bit flow point.
import type { Subject } from '../../../src/core/command.js';
import type { BundlePayload } from '../../../src/policy/payload.js';

export const NOW_MS = Date.UTC(2026, 0, 15, 12, 0, 0);
export const NOW_S = NOW_MS / 1000;

export function demoPayload(over: Partial<BundlePayload> = {}): BundlePayload {
  return {
    format: 1,
    name: 'unit',
    revision: 5,
    issued_at: NOW_S,
    not_before: NOW_S,
    expires_at: NOW_S + 86400,
    audience: 'plantgate:test',
    limits: { max_token_ttl_sec: 900 },
    issuers: [{ iss: 'https://issuer.test', jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'zGDNLIso6MNUcmdfVh84BJhjv4l149a4_C38QMPbjCk' }] } }],
    assets: [
      {
        id: 'plc1',
        zone: 'treatment',
        criticality: 'high',
        protocol: 'modbus',
        unit_id: 1,
        points: {
          'tank1.level': { table: 'input', address: 0, type: 'uint16', scale: 0.1 },
          'tank1.setpoint': { table: 'holding', address: 0, type: 'uint16', scale: 0.1 },
          'pump1.speed': { table: 'holding', address: 1, type: 'uint16' },
          'flow.target': { table: 'holding', address: 2, type: 'float32', word_order: 'big' },
          'pump1.run': { table: 'coil', address: 0, type: 'bool' },
          'valve1.open': { table: 'coil', address: 1, type: 'bool' },
          'control.auto': { table: 'coil', address: 2, type: 'bool' },
        },
      },
    ],
    rules: [
      {
        id: 'agents-read-plant',
        description: '',
        subject: { workload: 'spiffe://plant.example/agent/*', roles: [] },
        assets: ['plc1'],
        operations: ['read'],
        points: ['*'],
        ranges: [],
        bounds: {},
      },
      {
        id: 'optimizer-setpoint',
        description: '',
        subject: { workload: 'spiffe://plant.example/agent/optimizer', roles: [] },
        assets: ['plc1'],
        operations: ['write'],
        points: ['tank1.setpoint', 'pump1.speed', 'flow.target'],
        ranges: [],
        bounds: { 'tank1.setpoint': { min: 20, max: 80 }, 'pump1.speed': { min: 0, max: 1800 }, 'flow.target': { min: 0, max: 12.5 } },
      },
      {
        id: 'optimizer-pump',
        description: '',
        subject: { workload: 'spiffe://plant.example/agent/optimizer', roles: [] },
        assets: ['plc1'],
        operations: ['write'],
        points: ['pump1.run', 'valve1.open'],
        ranges: [],
        function_codes: [5, 15],
        bounds: {},
      },
      {
        id: 'maintainer-scratch',
        description: 'raw scratch registers outside the point map',
        subject: { workload: 'spiffe://plant.example/maintenance/**', owner: 'ops', roles: ['maintainer'] },
        assets: ['plc1'],
        operations: ['write'],
        points: [],
        ranges: [{ table: 'holding', from: 100, to: 109 }],
        require_scope: 'maintain',
        bounds: {},
      },
    ],
    ...over,
  };
}

export function subject(over: Partial<Subject> = {}): Subject {
  return {
    workloadId: 'spiffe://plant.example/agent/optimizer',
    owner: 'ops',
    taskId: 't-1',
    taskPurpose: 'tune level',
    jti: 'jti-1',
    roles: [],
    scopes: ['read', 'write'],
    assurance: 'mtls+token',
    issuer: 'https://issuer.test',
    expiresAtMs: NOW_MS + 600_000,
    issuedAtMs: NOW_MS,
    ...over,
  };
}
