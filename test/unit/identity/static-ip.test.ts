import { describe, expect, it } from 'vitest';
import { PlantgateError } from '../../../src/core/errors.js';
import { plaintextListenerSchema, StaticIdentityMap } from '../../../src/identity/static-ip.js';

const HMI = 'spiffe://plant.example/legacy/hmi-line1';

describe('static source-address identities (plaintext listener)', () => {
  const cfg = plaintextListenerSchema.parse({ host: '127.0.0.1', port: 0, identities: [{ address: '10.10.0.21', workload: HMI }] });
  const map = StaticIdentityMap.fromConfig(cfg);

  it('maps a listed address to its workload with the weaker assurance level', () => {
    const s = map.session('s1', '10.10.0.21', 50000);
    expect(s).toMatchObject({ workloadId: HMI, assurance: 'static-ip+token', certThumbprint: '', remoteAddress: '10.10.0.21:50000' });
  });

  it('treats an IPv4-mapped IPv6 peer as the same address', () => {
    expect(map.lookup('::ffff:10.10.0.21')).toBe(HMI);
  });

  it('gives an unlisted address no identity (NO_IDENTITY), never a neighbour’s', () => {
    expect(map.lookup('10.10.0.22')).toBeUndefined();
    let err: unknown;
    try {
      map.session('s2', '10.10.0.22', 1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PlantgateError);
    expect((err as PlantgateError).reason).toBe('NO_IDENTITY');
  });

  it.each([
    [{ address: '10.10.0.0/24', workload: HMI }, /single IPv4 or IPv6 address/],
    [{ address: 'hmi.local', workload: HMI }, /single IPv4 or IPv6 address/],
    [{ address: '10.10.0.21', workload: 'hmi' }, /SPIFFE ID/],
  ])('refuses the config entry %j with a precise message', (entry, msg) => {
    const r = plaintextListenerSchema.safeParse({ host: '0.0.0.0', port: 502, identities: [entry] });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0].message).toMatch(msg);
  });

  it('refuses an address mapped twice (also as its IPv4-mapped form)', () => {
    const r = plaintextListenerSchema.safeParse({
      host: '0.0.0.0', port: 502,
      identities: [{ address: '10.10.0.21', workload: HMI }, { address: '::ffff:10.10.0.21', workload: 'spiffe://plant.example/legacy/other' }],
    });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0].path).toEqual(['identities', 1, 'address']);
  });
});
