// A recorded command decision (an audit record, docs/audit.md) turned back into what the
// enforcement chain saw: the protocol-neutral Command, the Subject and the decision it got. Shared
// by `policy learn` and `policy replay`. Owns only that mapping; resolving targets to points is the
// engine's (against whichever bundle the caller decides with). Never invents identity: a record
// without a subject gives none, and what the audit does not carry (the token's zone claim, its
// validity period) is left unset.
import type { Assurance, Command, ModbusTable, Operation, Protocol, Subject, Target, TypedValue } from '../../core/command.js';
import { pb, type DecodedRecord } from '../../audit/schema.js';
import type { CommandResolver } from '../../assets/resolver.js';

export interface RecordedDecision {
  effect: 'allow' | 'deny';
  reason: string;
  ruleId: string;
  /** Shadow mode: what a monitor rule or bundle would have denied with ('' when nothing). */
  shadowReason: string;
  shadowRuleId: string;
  /** Every shadow finding's reason (monitor rules and bundle; ALLOWED where a trial would allow). */
  shadowReasons: string[];
  interlockId: string;
  approvalId: string;
  /** The delegating human whose rules decided a deny (`user:alice`), or ''. */
  principal: string;
  bundleRevision: number;
}

export interface ObservedCommand {
  gatewayId: string;
  seq: number;
  timeMs: number;
  cmd: Command;
  /** undefined when the record names no identity (refused before one was established). */
  subject: Subject | undefined;
  recorded: RecordedDecision;
}

const TABLES: ReadonlySet<string> = new Set<ModbusTable>(['coil', 'discrete', 'holding', 'input']);

/** The command decision a record holds, or undefined for every other kind of record. */
export function observedCommand(r: DecodedRecord): ObservedCommand | undefined {
  const d = r.decision;
  const info = d?.command;
  const dec = d?.decision;
  if (!d || !info || !dec) return undefined;
  const protocol = info.protocol as Protocol;
  const targets: Target[] = [];
  for (const t of info.targets ?? []) {
    // proto3 leaves defaults out: a Modbus target's address 0 and an OPC UA target's empty table.
    if (protocol === 'opcua' || (t.nodeId ?? '') !== '') {
      const target: Target = { nodeId: t.nodeId ?? '' };
      if (t.browsePath) target.browsePath = t.browsePath;
      if (t.attribute) target.attribute = t.attribute;
      targets.push(target);
    } else if (TABLES.has(t.table ?? '')) targets.push({ table: t.table as ModbusTable, address: t.address ?? 0, count: t.count ?? 0 });
  }
  // Every Command and Subject built here has the same shape (absent = undefined, not missing), so
  // the engine's property loads stay monomorphic over millions of replayed commands.
  const modbus = protocol === 'modbus';
  const cmd: Command = {
    sessionId: info.sessionId ?? '',
    protocol,
    unitId: modbus ? (info.unitId ?? 0) : undefined,
    assetId: info.assetId ?? '',
    operation: info.operation as Operation,
    functionCode: info.functionCode ?? 0,
    service: info.service || undefined,
    targets,
    points: info.points ?? [],
    rawValues: info.rawValues && info.rawValues.length > 0 ? info.rawValues : undefined,
    // Modbus values are decoded again from the raw registers by the bundle that decides
    // (resolveWith); an OPC UA front's values are the record's.
    values: !modbus && info.values && hasKeys(info.values) ? info.values : undefined,
    typedValues: info.typedValues && hasKeys(info.typedValues) ? typedValuesOf(info.typedValues) : undefined,
  };
  const id = d.subject;
  let subject: Subject | undefined;
  if (id) {
    subject = {
      workloadId: id.workloadId ?? '',
      owner: id.owner ?? '',
      taskId: id.taskId ?? '',
      taskPurpose: id.taskPurpose ?? '',
      jti: id.jti ?? '',
      actSub: id.actSub && id.actSub.length > 0 ? id.actSub : undefined,
      roles: id.roles ?? [],
      scopes: id.scopes ?? [],
      assurance: (id.assurance || 'none') as Assurance,
      certThumbprint: id.certThumbprint || undefined,
      issuer: id.issuer ?? '',
      zone: undefined,
      // The audit keeps no token lifetime: the token was checked when the command was decided.
      expiresAtMs: Number.POSITIVE_INFINITY,
      issuedAtMs: 0,
    };
  }
  return {
    gatewayId: r.gatewayId ?? '',
    seq: r.seq as number,
    timeMs: r.timeUnixMs as number,
    cmd,
    subject,
    recorded: {
      effect: dec.effect === pb.Effect.ALLOW ? 'allow' : 'deny',
      reason: dec.reason ?? '',
      ruleId: dec.ruleId ?? '',
      shadowReason: dec.shadowReason ?? '',
      shadowRuleId: dec.shadowRuleId ?? '',
      // Records from before the findings list carry the first one only.
      shadowReasons: dec.shadows && dec.shadows.length > 0 ? dec.shadows.map((f) => f.reason ?? '') : dec.shadowReason ? [dec.shadowReason] : [],
      interlockId: dec.interlockId ?? '',
      approvalId: dec.approvalId ?? '',
      principal: dec.principal ?? '',
      bundleRevision: (dec.bundleRevision as number) ?? 0,
    },
  };
}

function hasKeys(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

/**
 * Typed values back from the record's JSON text (src/audit/records.ts, typedValuesText). A value
 * cut for length is left out (policy then judges it missing: fail closed); a 64-bit integer, a
 * time or a byte string comes back as the string it was written as.
 */
function typedValuesOf(text: Record<string, string>): Record<string, TypedValue> | undefined {
  let out: Record<string, TypedValue> | undefined;
  for (const [name, t] of Object.entries(text)) {
    try {
      const v = JSON.parse(t) as unknown;
      if (v !== null) (out ??= {})[name] = v as TypedValue;
    } catch {
      // cut for length: not the value any more
    }
  }
  return out;
}

/** A one-line description of a command for people: `write fc 6 holding 0 [450] (tank1.setpoint=45)`. */
export function describeCommand(cmd: Command): string {
  const parts: string[] = [cmd.operation];
  if (cmd.protocol === 'modbus') parts.push(`fc ${cmd.functionCode}`);
  else if (cmd.service) parts.push(cmd.service);
  for (const t of cmd.targets) {
    if (t.nodeId !== undefined) parts.push(t.nodeId);
    else parts.push(`${t.table} ${t.address}${(t.count ?? 1) > 1 ? `+${t.count}` : ''}`);
  }
  if (cmd.rawValues) parts.push(`[${cmd.rawValues.slice(0, 8).join(',')}${cmd.rawValues.length > 8 ? ',…' : ''}]`);
  const named = cmd.values ? Object.entries(cmd.values).map(([k, v]) => `${k}=${Number(v.toPrecision(12))}`) : cmd.points;
  if (named.length > 0) parts.push(`(${named.slice(0, 6).join(', ')}${named.length > 6 ? ', …' : ''})`);
  return parts.join(' ');
}

/**
 * Resolves a recorded command's targets against a bundle as the gateway would have (asset, points
 * and, for Modbus writes, values decoded from the raw registers again).
 */
export function resolveWith(resolver: CommandResolver, cmd: Command): void {
  if (cmd.protocol === 'modbus') cmd.values = undefined;
  resolver.resolve(cmd);
}
