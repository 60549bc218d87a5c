// The command digest an approval is bound to (docs/safety.md, Approvals; docs/architecture.md, Seams): a stable, canonical SHA-256 over
// what the command does to the plant: asset, operation, targets in order, and the written values
// (raw wire values and engineering values). Owns that canonical form; must never include what
// does not change the effect (session, transaction id, function code: FC 5 and FC 15 writing the
// same coil to the same value are the same command to the operator who approved it) — except for
// commands without addresses, whose function code is their whole effect.
import { createHash } from 'node:crypto';
import type { Command } from '../core/command.js';

export const DIGEST_VERSION = 'plantgate-command-v1';

/** The canonical text the digest is taken over, one field per line, strings JSON-quoted. */
export function canonicalCommand(cmd: Command): string {
  const lines = [DIGEST_VERSION, `asset ${JSON.stringify(cmd.assetId)}`, `operation ${cmd.operation}`];
  // A command without register addresses (Modbus diagnostics, device identification) is what its
  // function code and selectors say it is: FC 8 sub-function 1 restarts the device, 0 only echoes.
  const addressed = cmd.targets.some((t) => t.table !== undefined || t.nodeId !== undefined);
  if (!addressed) lines.push(`function ${cmd.functionCode}`);
  for (const t of cmd.targets) {
    if (t.nodeId !== undefined) lines.push(`target node ${JSON.stringify(t.nodeId)}`);
    else if (t.table === undefined) lines.push(`target function ${t.subFunction ?? '-'} ${t.meiType ?? '-'} ${t.objectFrom ?? '-'} ${t.objectTo ?? '-'}`);
    else lines.push(`target ${t.table ?? '-'} ${t.address ?? '-'} ${t.count ?? 1}`);
  }
  if (cmd.rawValues !== undefined) lines.push(`raw ${cmd.rawValues.join(',')}`);
  if (cmd.values !== undefined) {
    for (const name of Object.keys(cmd.values).sort()) lines.push(`value ${JSON.stringify(name)} ${canonicalNumber(cmd.values[name]!)}`);
  }
  return lines.join('\n');
}

/** -0 and 0 are the same value; NaN never equals itself, so it gets a fixed spelling. */
function canonicalNumber(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  return Object.is(v, -0) ? '0' : String(v);
}

/** Hex SHA-256 of the canonical command. */
export function commandDigest(cmd: Command): string {
  return createHash('sha256').update(canonicalCommand(cmd)).digest('hex');
}
