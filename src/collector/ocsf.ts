// OCSF-shaped export of audit records for SIEMs (OCSF schema 1.1): command decisions and outcomes
// as API Activity (class 6003: the owner is actor.user, the workload actor.app_uid, the agent's
// address src_endpoint, the task metadata.correlation_uid; an MCP tool call names its client app,
// tool and arguments), token
// events and revocations as Authorize Session (class 3003).
// Other events (sessions, bundles, violations, checkpoints) stay in the NDJSON only. Pure: maps the
// collector's JSON form of a record (ndjson.ts), so lines can be regenerated from the NDJSON after
// a crash. Every line keeps the gateway id, seq and leaf hash (metadata.log_name / sequence,
// unmapped.hash) so a SIEM hit leads back to the verifiable record.

const VERSION = '1.1.0';
const PRODUCT = { name: 'plantgate', vendor_name: 'plantgate', feature: { name: 'gateway' } };

type Json = Record<string, any>;

// OCSF API Activity activity_id: 1 Create, 2 Read, 3 Update, 4 Delete, 99 Other.
const API_ACTIVITY = new Map<unknown, [number, string]>([
  ['read', [2, 'Read']],
  ['browse', [2, 'Read']],
  ['subscribe', [2, 'Read']],
  ['write', [3, 'Update']],
]);
const OTHER: [number, string] = [99, 'Other'];

/** The API Activity of a command's operation. */
export function apiActivity(operation: unknown): [number, string] {
  return API_ACTIVITY.get(operation) ?? OTHER;
}

function base(r: Json, classUid: number, className: string, categoryUid: number, categoryName: string, activity: [number, string]): Json {
  return {
    class_uid: classUid,
    class_name: className,
    category_uid: categoryUid,
    category_name: categoryName,
    activity_id: activity[0],
    activity_name: activity[1],
    type_uid: classUid * 100 + activity[0],
    type_name: `${className}: ${activity[1]}`,
    time: r.timeUnixMs,
    metadata: {
      version: VERSION,
      product: PRODUCT,
      uid: `${String(r.gatewayId)}:${String(r.seq)}`,
      log_name: r.gatewayId,
      sequence: r.seq,
    },
  };
}

/**
 * The status fields, added to `e` in their order. Events are built by assignment in a fixed key
 * order, never by spreading objects into each other: the collector maps every record it stores,
 * and spreading was most of its cost (docs/performance.md, collector).
 */
function withStatus(e: Json, ok: boolean, code: string, detail?: string): Json {
  e.status_id = ok ? 1 : 2;
  e.status = ok ? 'Success' : 'Failure';
  e.status_code = code;
  if (detail) e.status_detail = detail;
  e.severity_id = ok ? 1 : 3;
  e.severity = ok ? 'Informational' : 'Medium';
  return e;
}

/** The workload's identity as the session's user (Authorize Session: the session is the workload's). */
function user(subject: Json | undefined): Json {
  if (!subject) return { name: 'unidentified', type_id: 0, type: 'Unknown' };
  return { uid: subject.workloadId ?? '', name: subject.workloadId ?? '', type_id: 99, type: 'Workload' };
}

/**
 * Who acted (docs/audit.md, OCSF mapping): `actor.user` is the accountable person, the token's
 * owner; the workload (SPIFFE ID) that ran the command is the actor's app (`app_uid`, and
 * `app_name` unless an MCP client names itself); a delegating human (act.sub) is `invoked_by`.
 */
function actor(subject: Json | undefined, sessionId: string | undefined, appName?: string): Json {
  const workload = subject?.workloadId as string | undefined;
  const a: Json = {
    user: subject?.owner ? { uid: subject.owner, name: subject.owner, type_id: 1, type: 'User' } : { name: workload ? 'no owner' : 'unidentified', type_id: 0, type: 'Unknown' },
  };
  if (workload) {
    a.app_uid = workload;
    a.app_name = appName ?? workload;
  } else if (appName) a.app_name = appName;
  if (sessionId) a.session = subject?.jti ? { uid: sessionId, credential_uid: subject.jti } : { uid: sessionId };
  if (subject?.issuer) a.idp = { name: subject.issuer };
  if (subject?.actSub?.length) a.invoked_by = subject.actSub.join(',');
  return a;
}

/** "address:port" or "[v6]:port" as the gateway saw it → OCSF Network Endpoint. */
function endpoint(remote: unknown): Json {
  const m = typeof remote === 'string' ? /^\[?([^\]]*?)\]?:(\d+)$/.exec(remote) : null;
  if (!m) return { name: typeof remote === 'string' && remote ? remote : 'unknown' };
  return { ip: m[1], port: Number(m[2]) };
}

/** The asset and the points a command touched, with written values. */
function resources(assetId: unknown, points: unknown, values?: Json, typedValues?: Json): Json[] {
  const out: Json[] = [{ uid: assetId ?? '', type: 'asset' }];
  for (const p of (points ?? []) as string[]) {
    const point: Json = { uid: p, type: 'point' };
    if (values && Object.hasOwn(values, p)) point.data = { value: values[p] };
    else if (typedValues && Object.hasOwn(typedValues, p)) point.data = { value: typedValues[p] };
    out.push(point);
  }
  return out;
}

/** The OCSF event for a record (in the collector's JSON form), or undefined when it has no mapping. */
export function toOcsf(r: Json): Json | undefined {
  if (r.decision) {
    const d = r.decision as Json;
    const c = (d.command ?? {}) as Json;
    const dec = (d.decision ?? {}) as Json;
    const allowed = dec.effect === 'ALLOW';
    // An MCP tool call (docs/mcp.md, Audit): the API is the tool, called by the MCP client app;
    // the Command it became (and the protocol it ran over) stays in resources and unmapped.
    const mcp = d.mcp as Json | undefined;
    const task = d.subject?.taskId as string | undefined;
    const purpose = d.subject?.taskPurpose as string | undefined;
    const e = base(r, 6003, 'API Activity', 6, 'Application Activity', apiActivity(c.operation));
    // The task groups every command an agent ran for it: correlation_uid is what a SIEM joins on.
    if (task) e.metadata.correlation_uid = task;
    // A read recorded with its answer (docs/audit.md, One record per read): an answer other than ok
    // fails the activity, its status the outcome's.
    const o = d.outcome as Json | undefined;
    const failed = allowed && o !== undefined && o.status !== 'ok';
    withStatus(
      e, allowed && !failed, failed ? String(o.status ?? '') : (dec.reason ?? ''),
      [dec.ruleId ? `rule ${String(dec.ruleId)}` : '', failed && o.exceptionCode ? `exception 0x${Number(o.exceptionCode).toString(16)}` : ''].filter(Boolean).join(', ') || undefined,
    );
    e.message = `${allowed ? 'allowed' : `denied ${String(dec.reason ?? '')}`}: ${String(c.operation ?? '')} ${String(c.assetId ?? '')}${task ? ` for task ${task}${purpose ? ` (${purpose})` : ''}` : ''}${o !== undefined ? `, answered ${String(o.status ?? '')}` : ''}`;
    if (o !== undefined) e.duration = Math.round(Number(o.upstreamLatencyUs ?? 0) / 1000);
    const who = actor(d.subject, c.sessionId, mcp ? `${String(mcp.clientName ?? '')} ${String(mcp.clientVersion ?? '')}`.trim() : undefined);
    // A refusal before policy (identity, token, protocol) names no rule: no policy object then.
    who.authorizations = [dec.ruleId ? { decision: allowed ? 'allow' : 'deny', policy: { uid: dec.ruleId, version: String(dec.bundleRevision ?? 0) } } : { decision: allowed ? 'allow' : 'deny' }];
    e.actor = who;
    e.src_endpoint = endpoint(c.remoteAddress);
    e.api = mcp
        ? {
            operation: `tools/call ${String(mcp.tool ?? '')}`,
            service: { name: 'mcp', version: mcp.protocolVersion ?? '' },
            request: { uid: String(mcp.mcpSessionId ?? ''), data: { tool: mcp.tool ?? '', arguments: mcp.arguments ?? '' } },
          }
        : {
            operation: c.service || `${String(c.protocol ?? '')} fc ${String(c.functionCode ?? 0)} ${String(c.operation ?? '')}`.trim(),
            service: { name: c.protocol ?? '' },
            request: { uid: String(c.transactionId ?? 0) },
          };
    e.resources = resources(c.assetId, c.points, c.values, c.typedValues);
    const unmapped: Json = {
      gateway_id: r.gatewayId, seq: r.seq, hash: r.hash, task_id: task, task_purpose: purpose, assurance: d.subject?.assurance, cert_thumbprint: d.subject?.certThumbprint, targets: c.targets, raw_values: c.rawValues,
    };
    if (o !== undefined) {
      unmapped.outcome_status = o.status;
      unmapped.upstream_latency_us = o.upstreamLatencyUs ?? 0;
      if (o.exceptionCode) unmapped.exception_code = o.exceptionCode;
    }
    if (mcp) {
      unmapped.command_protocol = c.protocol;
      unmapped.function_code = c.functionCode;
    }
    e.unmapped = unmapped;
    return e;
  }
  const unmapped = { gateway_id: r.gatewayId, seq: r.seq, hash: r.hash };
  if (r.outcome) {
    const o = r.outcome as Json;
    const e = withStatus(
      base(r, 6003, 'API Activity', 6, 'Application Activity', apiActivity(o.operation)),
      o.status === 'ok', String(o.status ?? ''), o.exceptionCode ? `exception 0x${Number(o.exceptionCode).toString(16)}` : undefined,
    );
    e.message = `outcome ${String(o.status ?? '')} of ${String(o.operation ?? 'command')} ${String(o.assetId ?? '')} (decision seq ${String(o.decisionSeq ?? 0)})`;
    e.actor = o.workloadId ? { app_uid: o.workloadId, app_name: o.workloadId, session: { uid: o.sessionId ?? '' } } : { session: { uid: o.sessionId ?? '' } };
    e.api = { operation: 'outcome', request: { uid: String(o.transactionId ?? 0) } };
    e.resources = resources(o.assetId, o.points);
    e.duration = Math.round(Number(o.upstreamLatencyUs ?? 0) / 1000);
    e.unmapped = { gateway_id: r.gatewayId, seq: r.seq, hash: r.hash, decision_seq: o.decisionSeq ?? 0, upstream_latency_us: o.upstreamLatencyUs ?? 0 };
    return e;
  }
  if (r.token) {
    const t = r.token as Json;
    const ok = t.kind === 'accepted';
    return {
      // Authorize Session activity_id 1 = Assign Privileges: the token's scopes become the session's.
      ...base(r, 3003, 'Authorize Session', 3, 'Identity & Access Management', ok ? [1, 'Assign Privileges'] : [99, 'Other']),
      ...withStatus({}, ok, t.reason ?? '', t.detail || undefined),
      user: user(t.subject),
      ...(t.subject?.owner ? { actor: actor(t.subject, t.sessionId || undefined) } : {}),
      ...(t.subject?.jti ? { session: { uid: t.subject.jti, ...(t.expiresAtUnixMs ? { expiration_time: t.expiresAtUnixMs } : {}) } } : {}),
      privileges: (t.subject?.scopes ?? []) as string[],
      unmapped: { ...unmapped, kind: t.kind, task_id: t.subject?.taskId, task_purpose: t.subject?.taskPurpose, cert_thumbprint: t.subject?.certThumbprint },
    };
  }
  if (r.revocation) {
    const v = r.revocation as Json;
    return {
      ...base(r, 3003, 'Authorize Session', 3, 'Identity & Access Management', [99, 'Other']),
      ...withStatus({}, true, 'TOKEN_REVOKED', `${String(v.kind)}=${String(v.value)}: ${String(v.reason ?? '')}`),
      user: { uid: v.kind === 'sub' ? v.value : (v.workloadId ?? ''), type_id: 99, type: 'Workload' },
      actor: { user: { uid: v.by ?? '', name: v.by ?? '' } },
      unmapped: { ...unmapped, kind: v.kind, value: v.value, source: v.source, revoked_at_unix_ms: v.revokedAtUnixMs },
    };
  }
  if (r.freeze) {
    // An operator's emergency freeze (docs/operator.md): a change to what may run, as Entity
    // Management of the freeze itself (Create / Update for a two-person vote / Delete).
    const f = r.freeze as Json;
    const activity: [number, string] = f.kind === 'frozen' ? [1, 'Create'] : f.kind === 'unfreeze_requested' ? [3, 'Update'] : [4, 'Delete'];
    return {
      ...base(r, 3004, 'Entity Management', 3, 'Identity & Access Management', activity),
      ...withStatus({}, true, 'EMERGENCY_FREEZE', `${String(f.kind)} ${String(f.scope)}${f.value ? ` ${String(f.value)}` : ''}: ${String(f.reason ?? '')}`),
      actor: { user: { uid: f.by ?? '', name: f.by ?? '' } },
      entity: { uid: f.freezeId ?? '', name: `${String(f.scope)} ${String(f.value ?? '')}`.trim(), type: 'emergency_freeze' },
      unmapped: { ...unmapped, kind: f.kind, scope: f.scope, value: f.value, mode: f.mode, frozen_by: f.frozenBy, expires_at_unix_ms: f.expiresAtUnixMs, unfreeze_by: f.unfreezeBy, unfreeze_needed: f.unfreezeNeeded },
    };
  }
  return undefined;
}
