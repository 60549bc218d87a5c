// The collector's OCSF line of a record written as text straight from the decoded record, for the
// records a busy gateway is made of (command decisions and outcomes): the same characters as
// `JSON.stringify(toOcsf(recordToJson(record, hash)))` (ocsf.ts stays the mapping's definition and
// writes every other event), without the two object trees in between. Held equal to it by
// test/unit/collector/ocsf-text.test.ts over arbitrary records.
//
// It reads the record as decoded (schema.ts decodeRecord): protobufjs keeps no default values when
// it decodes, so a string, number or enum field is in the record's JSON form exactly when it is not
// its default, a message when it is set, a list or map when it is not empty.
import { toHex } from '../audit/hash.js';
import type { DecodedRecord } from '../audit/schema.js';
import { recordToJson } from './ndjson.js';
import { flat, numberText, quote as str, targetsText } from './ndjson-text.js';
import { apiActivity, toOcsf } from './ocsf.js';

type Message = Record<string, any>;

/** `"time":...,"metadata":{...` up to the metadata's last field, its brace left open (base() in ocsf.ts). */
function baseText(r: Message, activity: [number, string]): string {
  const gw = String(r.gatewayId ?? '');
  const seq = numberText(Number(r.seq));
  return `{"class_uid":6003,"class_name":"API Activity","category_uid":6,"category_name":"Application Activity","activity_id":${activity[0]},"activity_name":"${activity[1]}","type_uid":${600300 + activity[0]},"type_name":"API Activity: ${activity[1]}","time":${numberText(Number(r.timeUnixMs))},"metadata":{"version":"1.1.0","product":{"name":"plantgate","vendor_name":"plantgate","feature":{"name":"gateway"}},"uid":${str(`${gw}:${String(Number(r.seq))}`)},"log_name":${str(gw)},"sequence":${seq}`;
}

function statusText(ok: boolean, code: string, detail: string | undefined): string {
  return `,"status_id":${ok ? 1 : 2},"status":"${ok ? 'Success' : 'Failure'}","status_code":${str(code)}${detail ? `,"status_detail":${str(detail)}` : ''},"severity_id":${ok ? 1 : 3},"severity":"${ok ? 'Informational' : 'Medium'}"`;
}

/** The asset and the points a command touched, with written values (resources() in ocsf.ts). */
function resourcesText(assetId: string, points: string[], values?: Message, typedValues?: Message): string {
  let s = `[{"uid":${str(assetId)},"type":"asset"}`;
  for (const p of points) {
    s += `,{"uid":${str(p)},"type":"point"`;
    if (values && Object.hasOwn(values, p)) s += `,"data":{"value":${numberText(values[p])}}}`;
    else if (typedValues && Object.hasOwn(typedValues, p)) s += `,"data":{"value":${str(typedValues[p])}}}`;
    else s += '}';
  }
  return `${s}]`;
}

function endpointText(remote: string): string {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(remote);
  if (!m) return `{"name":${str(remote || 'unknown')}}`;
  return `{"ip":${str(m[1])},"port":${numberText(Number(m[2]))}}`;
}

function decisionText(r: Message, d: Message, hash: string): string {
  const c: Message = d.command ?? {};
  const dec: Message = d.decision ?? {};
  const subject: Message | null = d.subject;
  const mcp: Message | null = d.mcp;
  const o: Message | null = d.outcome;
  const allowed = dec.effect === 1;
  const task: string = subject?.taskId || '';
  const purpose: string = subject?.taskPurpose || '';
  const failed = allowed && o != null && o.status !== 'ok';
  const reason: string = dec.reason || '';
  const status: string = o?.status || '';
  let e = baseText(r, apiActivity(c.operation));
  if (task) e += `,"correlation_uid":${str(task)}`;
  e += '}';
  const detail = [dec.ruleId ? `rule ${String(dec.ruleId)}` : '', failed && o.exceptionCode ? `exception 0x${Number(o.exceptionCode).toString(16)}` : ''].filter(Boolean).join(', ') || undefined;
  e += statusText(allowed && !failed, failed ? status : reason, detail);
  e += `,"message":${str(`${allowed ? 'allowed' : `denied ${reason}`}: ${String(c.operation || '')} ${String(c.assetId || '')}${task ? ` for task ${task}${purpose ? ` (${purpose})` : ''}` : ''}${o != null ? `, answered ${status}` : ''}`)}`;
  if (o != null) e += `,"duration":${numberText(Math.round(Number(o.upstreamLatencyUs || 0) / 1000))}`;

  // actor() in ocsf.ts: the owner as the user, the workload as the app, the MCP client's name.
  const workload: string = subject?.workloadId || '';
  const owner: string = subject?.owner || '';
  const appName = mcp != null ? `${String(mcp.clientName || '')} ${String(mcp.clientVersion || '')}`.trim() : undefined;
  e += owner ? `,"actor":{"user":{"uid":${str(owner)},"name":${str(owner)},"type_id":1,"type":"User"}` : `,"actor":{"user":{"name":"${workload ? 'no owner' : 'unidentified'}","type_id":0,"type":"Unknown"}`;
  if (workload) e += `,"app_uid":${str(workload)},"app_name":${str(appName ?? workload)}`;
  else if (appName) e += `,"app_name":${str(appName)}`;
  if (c.sessionId) e += subject?.jti ? `,"session":{"uid":${str(c.sessionId)},"credential_uid":${str(subject.jti)}}` : `,"session":{"uid":${str(c.sessionId)}}`;
  if (subject?.issuer) e += `,"idp":{"name":${str(subject.issuer)}}`;
  if (subject?.actSub?.length) e += `,"invoked_by":${str(subject.actSub.join(','))}`;
  const verdict = allowed ? '"allow"' : '"deny"';
  e += dec.ruleId
    ? `,"authorizations":[{"decision":${verdict},"policy":{"uid":${str(dec.ruleId)},"version":${str(String(Number(dec.bundleRevision || 0)))}}}]}`
    : `,"authorizations":[{"decision":${verdict}}]}`;

  e += `,"src_endpoint":${endpointText(c.remoteAddress || '')}`;
  e += mcp != null
    ? `,"api":{"operation":${str(`tools/call ${String(mcp.tool || '')}`)},"service":{"name":"mcp","version":${str(mcp.protocolVersion || '')}},"request":{"uid":${str(String(mcp.mcpSessionId || ''))},"data":{"tool":${str(mcp.tool || '')},"arguments":${str(mcp.arguments || '')}}}}`
    : `,"api":{"operation":${str(c.service || `${String(c.protocol || '')} fc ${String(c.functionCode || 0)} ${String(c.operation || '')}`.trim())},"service":${c.protocol ? `{"name":${str(c.protocol)}}` : '{"name":""}'},"request":{"uid":"${String(c.transactionId || 0)}"}}`;
  e += `,"resources":${resourcesText(c.assetId || '', c.points ?? [], c.values, c.typedValues)}`;

  e += `,"unmapped":{"gateway_id":${str(String(r.gatewayId ?? ''))},"seq":${numberText(Number(r.seq))},"hash":"${hash}"`;
  if (task) e += `,"task_id":${str(task)}`;
  if (purpose) e += `,"task_purpose":${str(purpose)}`;
  if (subject?.assurance) e += `,"assurance":${str(subject.assurance)}`;
  if (subject?.certThumbprint) e += `,"cert_thumbprint":${str(subject.certThumbprint)}`;
  if (c.targets?.length) e += `,"targets":${targetsText(c.targets)}`;
  if (c.rawValues?.length) e += `,"raw_values":[${(c.rawValues as number[]).map(numberText).join(',')}]`;
  if (o != null) {
    if (status) e += `,"outcome_status":${str(status)}`;
    e += `,"upstream_latency_us":${numberText(Number(o.upstreamLatencyUs || 0))}`;
    if (o.exceptionCode) e += `,"exception_code":${numberText(o.exceptionCode)}`;
  }
  if (mcp != null) {
    if (c.protocol) e += `,"command_protocol":${str(c.protocol)}`;
    if (c.functionCode) e += `,"function_code":${numberText(c.functionCode)}`;
  }
  return `${e}}}`;
}

function outcomeText(r: Message, o: Message, hash: string): string {
  const status: string = o.status || '';
  const session = `"session":{"uid":${str(o.sessionId || '')}}`;
  const latency = Number(o.upstreamLatencyUs || 0);
  let e = `${baseText(r, apiActivity(o.operation))}}`;
  e += statusText(status === 'ok', status, o.exceptionCode ? `exception 0x${Number(o.exceptionCode).toString(16)}` : undefined);
  e += `,"message":${str(`outcome ${status} of ${String(o.operation || 'command')} ${String(o.assetId || '')} (decision seq ${String(Number(o.decisionSeq || 0))})`)}`;
  e += o.workloadId ? `,"actor":{"app_uid":${str(o.workloadId)},"app_name":${str(o.workloadId)},${session}}` : `,"actor":{${session}}`;
  e += `,"api":{"operation":"outcome","request":{"uid":"${String(o.transactionId || 0)}"}}`;
  e += `,"resources":${resourcesText(o.assetId || '', o.points ?? [])}`;
  e += `,"duration":${numberText(Math.round(latency / 1000))}`;
  e += `,"unmapped":{"gateway_id":${str(String(r.gatewayId ?? ''))},"seq":${numberText(Number(r.seq))},"hash":"${hash}","decision_seq":${numberText(Number(o.decisionSeq || 0))},"upstream_latency_us":${numberText(latency)}}}`;
  return e;
}

/** The record's OCSF line, or undefined when its event has no OCSF mapping. */
export function ocsfLine(record: DecodedRecord, hash: Uint8Array): string | undefined {
  const r = record as unknown as Message;
  if (r.decision != null) return flat(decisionText(r, r.decision, toHex(hash)));
  if (r.outcome != null) return flat(outcomeText(r, r.outcome, toHex(hash)));
  const o = toOcsf(recordToJson(record, hash));
  return o ? JSON.stringify(o) : undefined;
}
