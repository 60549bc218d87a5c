import { describe, expect, it } from 'vitest';
import { boundName, certificateMatches } from '../../../src/collector/identity.js';

describe('which certificate proves which gateway id', () => {
  it('a configured identity must be the certificate SPIFFE ID or CN exactly', () => {
    expect(certificateMatches({ spiffeId: 'spiffe://plant.example/gateway', cn: 'plantgate gateway' }, 'gw-1', 'spiffe://plant.example/gateway')).toBe(true);
    expect(certificateMatches({ spiffeId: undefined, cn: 'gw-1.site-a' }, 'gw-1', 'gw-1.site-a')).toBe(true);
    expect(certificateMatches({ spiffeId: 'spiffe://plant.example/gateway/gw-2', cn: 'gw-1' }, 'gw-1', 'spiffe://plant.example/gateway/gw-1')).toBe(false);
  });

  it('without a configured identity, needs spiffe://<td>/gateway/<id> or CN=<id>', () => {
    expect(certificateMatches({ spiffeId: 'spiffe://plant.example/gateway/gw-1', cn: undefined }, 'gw-1', undefined)).toBe(true);
    expect(certificateMatches({ spiffeId: 'spiffe://other.example/gateway/gw-1', cn: undefined }, 'gw-1', undefined)).toBe(true);
    expect(certificateMatches({ spiffeId: undefined, cn: 'gw-1' }, 'gw-1', undefined)).toBe(true);
    expect(certificateMatches({ spiffeId: 'spiffe://plant.example/gateway/gw-10', cn: undefined }, 'gw-1', undefined)).toBe(false);
    expect(certificateMatches({ spiffeId: 'spiffe://plant.example/agent/gateway/gw-1', cn: undefined }, 'gw-1', undefined)).toBe(false);
    expect(certificateMatches({ spiffeId: 'spiffe://gw-1', cn: undefined }, 'gw-1', undefined)).toBe(false);
    expect(certificateMatches({ spiffeId: undefined, cn: undefined }, 'gw-1', undefined)).toBe(false);
  });

  it('binds on first use to the SPIFFE ID, else to CN=<cn>', () => {
    expect(boundName({ spiffeId: 'spiffe://plant.example/gateway', cn: 'x' })).toBe('spiffe://plant.example/gateway');
    expect(boundName({ spiffeId: undefined, cn: 'x' })).toBe('CN=x');
    expect(boundName({ spiffeId: undefined, cn: undefined })).toBeUndefined();
  });
});
