// Application certificates for OPC UA agents carry the Modbus/TCP Security role extension when
// asked to, in the exact DER form the gateway's certificate reader accepts.
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PlantgateError } from '../../../src/core/errors.js';
import { identityFromCertificate } from '../../../src/identity/cert.js';
import { createAppCert } from '../../../protocols/opcua/app-cert.js';

const AGENT = 'spiffe://plant.example/agent/optimizer';

describe('OPC UA application certificates with a role', () => {
  it('an agent certificate made with a role is read back with that role and the agent\'s SPIFFE ID', async () => {
    const cert = await createAppCert({ applicationUri: AGENT, commonName: 'optimizer', role: 'operator' });
    expect(identityFromCertificate(new X509Certificate(cert.der))).toMatchObject({ workloadId: AGENT, role: 'operator' });
  });

  it('an agent certificate made without a role has none', async () => {
    const cert = await createAppCert({ applicationUri: AGENT, commonName: 'optimizer' });
    expect(identityFromCertificate(new X509Certificate(cert.der)).role).toBeUndefined();
  });

  it('long and non-ASCII role names survive the DER length forms (one and two length octets)', async () => {
    for (const role of ['é'.repeat(100), 'é'.repeat(128)]) {
      const cert = await createAppCert({ applicationUri: AGENT, commonName: 'optimizer', role });
      expect(identityFromCertificate(new X509Certificate(cert.der)).role).toBe(role);
    }
  });

  it('a role the gateway would not accept makes the certificate carry no usable identity (NO_IDENTITY), never no role', async () => {
    const cert = await createAppCert({ applicationUri: AGENT, commonName: 'optimizer', role: 'x'.repeat(129) });
    expect(() => identityFromCertificate(new X509Certificate(cert.der))).toThrow(PlantgateError);
  });
});
