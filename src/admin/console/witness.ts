// What the console shows of a checkpoint's witness cosignatures (C2SP tlog-cosignature/v1: a note
// signature whose bytes are keyid(4) || u64be time || signature(64)): who cosigned, and when.
// Display only: the shipper verified each cosignature against the configured witness keys before
// it stored it next to the checkpoint (docs/audit.md). Never used to decide anything.
import { parseNote } from '../../audit/note.js';

export function cosignatureTimes(note: string): Array<{ name: string; atMs: number }> {
  let sigs: ReturnType<typeof parseNote>['sigs'];
  try {
    sigs = parseNote(note).sigs;
  } catch {
    return [];
  }
  const out: Array<{ name: string; atMs: number }> = [];
  for (const s of sigs) {
    const raw = Buffer.from(s.base64, 'base64');
    if (raw.length !== 4 + 8 + 64) continue;
    out.push({ name: s.name, atMs: Number(raw.readBigUInt64BE(4)) * 1000 });
  }
  return out;
}
