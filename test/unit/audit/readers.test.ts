// The streaming readers of recorded traffic (spool segments, the collector's NDJSON) that policy
// learn and replay use: every record in order across read-buffer boundaries and segments, damage
// named by file and position without stopping the read, and the NDJSON line mapped back to exactly
// the record it was made from.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leafHash } from '../../../src/audit/hash.js';
import { decisionRecord } from '../../../src/audit/records.js';
import { decodeRecord, encodeRecord, SCHEMA_VERSION, type DecodedRecord } from '../../../src/audit/schema.js';
import { encodeSpoolFrame } from '../../../src/audit/spool.js';
import { encodeLostFrame } from '../../../src/audit/spool-scan.js';
import { spoolBatches, spoolSegments, type SpoolReadProblem } from '../../../src/audit/spool-reader.js';
import { lostRecordJson, recordFromJson, recordToJson } from '../../../src/collector/ndjson.js';
import { ndjsonBatches } from '../../../src/collector/ndjson-reader.js';
import { InputError, openAuditInputs } from '../../../src/policy/observed/input.js';
import { cmd, allow, subject } from './fixtures.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-readers-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Record `seq`, its task purpose padded so records are ~`pad` bytes. */
function record(seq: number, pad = 0): Uint8Array {
  const s = { ...subject, taskPurpose: `tune ${'x'.repeat(pad)}` };
  return encodeRecord({ schemaVersion: SCHEMA_VERSION, gatewayId: 'gw-r', seq, timeUnixMs: 1_768_478_400_000 + seq, prevHash: new Uint8Array(32), ...decisionRecord(cmd, s, allow) });
}

async function readAll(segDir: string): Promise<{ seqs: number[]; problems: SpoolReadProblem[]; bytes: number }> {
  const problems: SpoolReadProblem[] = [];
  const seqs: number[] = [];
  let bytes = 0;
  for await (const b of spoolBatches(await spoolSegments(segDir), (p) => problems.push(p))) {
    for (const r of b.records) seqs.push(r.seq as number);
    bytes += b.bytes;
  }
  return { seqs, problems, bytes };
}

describe('the spool reader', () => {
  it('reads every record of every segment in order, across read-buffer boundaries', async () => {
    const d = path.join(dir, 'big');
    await mkdir(d);
    // Two segments of ~6 MiB each (the read buffer is 4 MiB), records of ~20 kB.
    let seq = 0;
    let total = 0;
    for (const name of ['0000000000000000.seg', '0000000000000300.seg']) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 300; i++) frames.push(encodeSpoolFrame(record(seq++, 20_000 + (i % 7))));
      const buf = Buffer.concat(frames);
      total += buf.length;
      await writeFile(path.join(d, name), buf);
    }
    const { seqs, problems, bytes } = await readAll(d);
    expect(problems).toEqual([]);
    expect(seqs).toEqual(Array.from({ length: 600 }, (_, i) => i));
    expect(bytes).toBe(total);
  });

  it('skips a record whose bytes changed, naming segment and offset, and reads on', async () => {
    const d = path.join(dir, 'flipped');
    await mkdir(d);
    const frames = [0, 1, 2].map((s) => encodeSpoolFrame(record(s)));
    frames[1]![20] ^= 0xff;
    await writeFile(path.join(d, '0000000000000000.seg'), Buffer.concat(frames));
    const { seqs, problems } = await readAll(d);
    expect(seqs).toEqual([0, 2]);
    expect(problems).toEqual([{ where: `0000000000000000.seg@${frames[0]!.length}`, message: 'record bytes do not match their CRC (changed on disk): skipped', tornTail: false }]);
  });

  it('calls a partial frame at the end of the newest segment a torn tail, and damage elsewhere', async () => {
    const d = path.join(dir, 'torn');
    await mkdir(d);
    const whole = Buffer.concat([0, 1].map((s) => encodeSpoolFrame(record(s))));
    const partial = encodeSpoolFrame(record(2)).subarray(0, 30);
    await writeFile(path.join(d, '0000000000000000.seg'), Buffer.concat([whole, partial]));
    await writeFile(path.join(d, '0000000000000003.seg'), Buffer.concat([encodeSpoolFrame(record(3)), partial]));
    const { seqs, problems } = await readAll(d);
    expect(seqs).toEqual([0, 1, 3]);
    expect(problems.map((p) => [p.where.split('@')[0], p.tornTail])).toEqual([
      ['0000000000000000.seg', false],
      ['0000000000000003.seg', true],
    ]);
  });

  it('names a record lost by the gateway (audit recover marker) and reads on', async () => {
    const d = path.join(dir, 'lost');
    await mkdir(d);
    const first = encodeSpoolFrame(record(0));
    await writeFile(path.join(d, '0000000000000000.seg'), Buffer.concat([first, encodeLostFrame(1, leafHash(record(1))), encodeSpoolFrame(record(2))]));
    const { seqs, problems } = await readAll(d);
    expect(seqs).toEqual([0, 2]);
    expect(problems).toEqual([{ where: `0000000000000000.seg@${first.length}`, message: 'record 1 was lost (an AUDIT_GAP record declares it): not read', tornTail: false }]);
  });

  it('stops a segment at a length that cannot be a frame (zero-filled tail)', async () => {
    const d = path.join(dir, 'zeros');
    await mkdir(d);
    await writeFile(path.join(d, '0000000000000000.seg'), Buffer.concat([encodeSpoolFrame(record(0)), Buffer.alloc(64)]));
    const { seqs, problems } = await readAll(d);
    expect(seqs).toEqual([0]);
    expect(problems[0]!.message).toMatch(/zero-filled frame/);
  });
});

describe('the collector NDJSON reader', () => {
  it('maps a line back to the exact record it was written from (property: the same bytes again)', () => {
    // -0 is left out: JSON writes it as 0 (the collector's mapping, not the reader, loses the sign).
    const text = fc.string({ unit: 'grapheme', maxLength: 20 });
    fc.assert(
      fc.property(
        fc.record({ seq: fc.nat({ max: 2 ** 40 }), time: fc.nat({ max: 2 ** 42 }), workload: text, points: fc.array(text, { maxLength: 3 }), raw: fc.array(fc.nat({ max: 65535 }), { maxLength: 4 }), value: fc.double({ noNaN: true, noDefaultInfinity: true }).filter((v) => !Object.is(v, -0)), address: fc.nat({ max: 65535 }), reason: text }),
        (g) => {
          const c = { ...cmd, points: g.points, rawValues: g.raw, values: { v: g.value }, targets: [{ table: 'holding' as const, address: g.address, count: 1 }] };
          const bytes = encodeRecord({ schemaVersion: SCHEMA_VERSION, gatewayId: 'gw', seq: g.seq, timeUnixMs: g.time, prevHash: leafHash(new Uint8Array([1])), ...decisionRecord(c, { ...subject, workloadId: g.workload }, { ...allow, reason: 'ALLOWED', ruleId: g.reason }) });
          const line = JSON.stringify(recordToJson(decodeRecord(bytes), leafHash(bytes)));
          expect(Buffer.from(encodeRecord(recordFromJson(JSON.parse(line) as Record<string, unknown>)))).toEqual(Buffer.from(bytes));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('reports a line that is not a record (or a lost one) by file and line, and reads the rest (a last line without newline too)', async () => {
    const file = path.join(dir, 'gw-r.ndjson');
    const line = (s: number) => JSON.stringify(recordToJson(decodeRecord(record(s)), leafHash(record(s))));
    const lost = JSON.stringify(lostRecordJson('gw-r', 3, leafHash(record(3)), 0));
    await writeFile(file, `${line(0)}\n{"seq": "not a number"\n${line(1)}\n[1,2]\n${lost}\n${line(2)}`);
    const problems: { where: string; message: string }[] = [];
    const seqs: number[] = [];
    for await (const b of ndjsonBatches([{ path: file, bytes: 0 }], (p) => problems.push(p))) for (const r of b.records) seqs.push(r.seq as number);
    expect(seqs).toEqual([0, 1, 2]);
    expect(problems.map((p) => p.where)).toEqual([`${file}:2`, `${file}:4`, `${file}:5`]);
    expect(problems[2]!.message).toBe('record 3 was lost by the gateway (an AUDIT_GAP record declares it): not read');
  });
});

describe('audit inputs', () => {
  it('tells a spool, a collector output directory and an NDJSON file apart, and refuses anything else', async () => {
    const spool = path.join(dir, 'big');
    const collector = path.join(dir, 'collector');
    await mkdir(path.join(collector, 'gw-daily'), { recursive: true });
    const l = JSON.stringify(recordToJson(decodeRecord(record(0)), leafHash(record(0))));
    await writeFile(path.join(collector, 'gw-single.ndjson'), `${l}\n`);
    await writeFile(path.join(collector, 'gw-single.ocsf.ndjson'), '{}\n');
    await writeFile(path.join(collector, 'gw-daily', '2026-01-15.ndjson'), `${l}\n`);
    const inputs = await openAuditInputs([spool, collector, path.join(collector, 'gw-single.ndjson')]);
    expect(inputs.describe).toEqual([`${spool}: spool, 2 segment(s)`, `${collector}: collector output, 2 NDJSON file(s)`, `${path.join(collector, 'gw-single.ndjson')}: collector NDJSON`]);
    const seen: DecodedRecord[] = [];
    for await (const b of inputs.batches(() => undefined)) seen.push(...b.records);
    expect(seen).toHaveLength(603);
    await expect(openAuditInputs([path.join(dir, 'nowhere')])).rejects.toThrow(InputError);
    await expect(openAuditInputs([path.join(collector, 'gw-single.ocsf.ndjson')])).rejects.toThrow(/not a record NDJSON file/);
    const other = path.join(dir, 'other');
    await mkdir(other);
    await writeFile(path.join(other, 'notes.txt'), 'hello\n');
    await expect(openAuditInputs([other])).rejects.toThrow(/neither a spool/);
  });
});
