// Replays fixtures/frames/*.hex: each malformed frame must be refused with exactly the code its
// `# expect:` line names, whether it arrives in one segment or byte by byte.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FrameDecoder, ModbusFrameError, decodeRequest } from '../../../protocols/modbus/codec.js';

const CORPUS = fileURLToPath(new URL('../../../fixtures/frames/', import.meta.url));

function load(file: string): { expect: string; bytes: Buffer } {
  const lines = readFileSync(join(CORPUS, file), 'utf8').split('\n');
  const expectLine = lines.find((l) => /^#\s*expect:/.test(l));
  if (expectLine === undefined) throw new Error(`${file}: no "# expect: CODE" line`);
  const hex = lines.filter((l) => !l.startsWith('#')).join('').replace(/\s+/g, '');
  return { expect: expectLine.replace(/^#\s*expect:\s*/, '').trim(), bytes: Buffer.from(hex, 'hex') };
}

/** The codes the gateway's codec path reports for a byte stream, in order. */
function replay(chunks: Buffer[]): { codes: string[]; pending: number } {
  const codes: string[] = [];
  const decoder = new FrameDecoder(
    (frame) => {
      try {
        decodeRequest(frame.pdu);
      } catch (err) {
        if (!(err instanceof ModbusFrameError)) throw err;
        codes.push(err.code);
      }
    },
    (err) => codes.push(err.code),
  );
  for (const c of chunks) decoder.push(c);
  return { codes, pending: decoder.pendingBytes };
}

const files = readdirSync(CORPUS).filter((f) => f.endsWith('.hex')).sort();

describe('malformed-frame corpus', () => {
  it('has cases for every refusal code the decoder can produce from the wire', () => {
    const codes = new Set(files.map((f) => load(f).expect));
    expect([...codes].sort()).toEqual(['BAD_LENGTH', 'BAD_PDU', 'BAD_PROTOCOL_ID', 'UNSUPPORTED_FUNCTION']);
  });

  it.each(files)('%s is refused with its expected code', (file) => {
    const { expect: code, bytes } = load(file);
    const whole = replay([bytes]);
    expect(whole.codes).toEqual([code]);
    const bytewise = replay([...bytes].map((b) => Buffer.from([b])));
    expect(bytewise.codes).toEqual([code]);
  });
});
