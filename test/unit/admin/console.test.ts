// The console's pure parts: escaping (every agent- or operator-controlled string), decision filters,
// the witness cosignature times it shows, and the origin check of form posts.
import { generateKeyPairSync } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkpointBody, cosigner, signCheckpoint } from '../../../src/audit/checkpoint.js';
import { addSignatureLines, noteSigner } from '../../../src/audit/note.js';
import { filterFrom, matches, type DecisionRow } from '../../../src/admin/console/feed.js';
import { html } from '../../../src/admin/console/html.js';
import { sameOrigin } from '../../../src/admin/console/sessions.js';
import { cosignatureTimes } from '../../../src/admin/console/witness.js';

describe('console HTML', () => {
  it('escapes every interpolated string: no markup an agent sends survives as markup', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const m = /^<td title="([^"]*)">(.*)<\/td>$/s.exec(html`<td title="${s}">${s}</td>`.text);
        expect(m).not.toBeNull();
        expect(m![1]).toBe(m![2]);
        expect(m![2]).not.toMatch(/[<>"']/);
      }),
    );
    expect(html`<p>${'<script>alert(1)</script>'}</p>`.text).toBe('<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>');
  });

  it('keeps nested fragments and arrays as markup, and drops undefined, null and false', () => {
    expect(html`<ul>${['a', 'b'].map((x) => html`<li>${x}</li>`)}</ul>${undefined}${null}${false}`.text).toBe('<ul><li>a</li><li>b</li></ul>');
  });
});

describe('live decision filters', () => {
  const row: DecisionRow = {
    seq: 1, at: '', protocol: 'modbus', workload: 'spiffe://plant.example/agent/optimizer', owner: 'alice', asset: 'plc1', operation: 'write',
    points: [], values: '', effect: 'deny', reason: 'EMERGENCY_FREEZE', rule: '', freeze: 'frz-1', approval: '', interlock: '',
  };
  it('match agent by part of its SPIFFE ID, asset, effect and reason exactly; ignore empty or unknown values', () => {
    expect(matches(row, filterFrom(new URLSearchParams('agent=optimizer&asset=plc1&effect=deny&reason=EMERGENCY_FREEZE')))).toBe(true);
    expect(matches(row, filterFrom(new URLSearchParams('asset=plc')))).toBe(false);
    expect(matches(row, filterFrom(new URLSearchParams('effect=allow')))).toBe(false);
    expect(filterFrom(new URLSearchParams('effect=maybe&agent=&reason='))).toEqual({});
  });
});

describe('witness cosignature times', () => {
  it("reads each cosignature's time from a cosigned checkpoint, and none from the log's own signature", () => {
    const log = generateKeyPairSync('ed25519');
    const witness = generateKeyPairSync('ed25519');
    const cp = { origin: 'plantgate/gw', size: 7, root: new Uint8Array(32) };
    const note = signCheckpoint(cp, noteSigner('plantgate/gw', log.privateKey));
    expect(cosignatureTimes(note)).toEqual([]);
    const line = cosigner('soc.example/witness', witness.privateKey).cosign(checkpointBody(cp), 1_767_000_000);
    expect(cosignatureTimes(addSignatureLines(note, [line]))).toEqual([{ name: 'soc.example/witness', atMs: 1_767_000_000_000 }]);
    expect(cosignatureTimes('not a note')).toEqual([]);
  });
});

describe('origin check of form posts', () => {
  const req = (headers: Record<string, string>) => ({ headers: { host: 'gw:9443', ...headers } }) as unknown as IncomingMessage;
  it('accepts our own origin, or same-origin fetch metadata; refuses another origin, "null" and a request with neither', () => {
    expect(sameOrigin(req({ origin: 'https://gw:9443' }))).toBe(true);
    expect(sameOrigin(req({ 'sec-fetch-site': 'same-origin' }))).toBe(true);
    expect(sameOrigin(req({ origin: 'https://evil.example' }))).toBe(false);
    expect(sameOrigin(req({ origin: 'null', 'sec-fetch-site': 'same-origin' }))).toBe(false);
    expect(sameOrigin(req({ 'sec-fetch-site': 'cross-site' }))).toBe(false);
    expect(sameOrigin(req({}))).toBe(false);
  });
});
