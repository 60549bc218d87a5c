// The operator API's emergency-freeze endpoints (docs/operator.md, "Emergency freeze"):
//   GET  /v1/freezes                    freezes in force and recently lifted (operator or owner role)
//   POST /v1/freezes                    freeze {"site": true | "asset" | "workload" | "owner", "reason", "mode"?, "expires_in_sec"? | "expires_at"?}
//   POST /v1/freezes/{id}/unfreeze      {"reason"}: lift it (or add a vote under the two-person rule)
// The operator role may freeze anything and lift freezes; the owner role may freeze only its own
// agents (scope owner = its own sub) and may not lift anything. Owns HTTP handling of these routes;
// the store decides and persists, the gateway audits its `changed` events.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../core/clock.js';
import { samePrincipal } from '../core/principal.js';
import type { Reason } from '../core/reasons.js';
import { freezeView, parseFreezeBody, parseReason } from '../freeze/request.js';
import { FreezeError, type FreezeStore } from '../freeze/store.js';
import type { Operator } from '../identity/operator.js';
import { readJsonBody, sendJson } from './http.js';

export type FreezeRoute = { kind: 'list' } | { kind: 'freeze' } | { kind: 'unfreeze'; id: string };

const FREEZE_ID_RE = /^frz-[A-Za-z0-9_-]{1,32}$/;
const MAX_BODY = 4 * 1024;

export function matchFreezeRoute(method: string, path: string): FreezeRoute | undefined {
  if (path === '/v1/freezes') return method === 'GET' ? { kind: 'list' } : method === 'POST' ? { kind: 'freeze' } : undefined;
  const m = /^\/v1\/freezes\/([^/]+)\/unfreeze$/.exec(path);
  if (m && method === 'POST' && FREEZE_ID_RE.test(m[1]!)) return { kind: 'unfreeze', id: m[1]! };
  return undefined;
}

export const FREEZE_ERROR_STATUS: Record<FreezeError['code'], [number, Reason]> = {
  BAD_REQUEST: [400, 'PROTOCOL_VIOLATION'],
  NOT_FOUND: [404, 'PROTOCOL_VIOLATION'],
  ALREADY_VOTED: [409, 'SCOPE_MISSING'],
  STORE_FULL: [503, 'AUDIT_UNAVAILABLE'],
  STORE_CORRUPT: [503, 'AUDIT_UNAVAILABLE'],
  STORE_UNAVAILABLE: [503, 'AUDIT_UNAVAILABLE'],
};

/** Why this operator may not make this freeze, or undefined. Shared with the console. */
export function freezeRefusal(operator: Operator, scope: string, value: string): string | undefined {
  if (operator.isOperator) return undefined;
  if (scope === 'owner' && samePrincipal(value, operator.sub)) return undefined;
  return `the owner role may freeze only its own agents ({"owner": "${operator.sub}"}); other freezes need the "operator" role`;
}

export interface FreezeApiDeps {
  freezes: FreezeStore;
  clock: Clock;
  /** The active bundle's asset ids (a freeze of an unknown asset is refused); undefined: no bundle. */
  assetIds(): string[] | undefined;
}

type Refuse = (status: number, reason: Reason, detail: string, message: string, operatorSub?: string) => void;

export async function handleFreeze(req: IncomingMessage, res: ServerResponse, deps: FreezeApiDeps, route: FreezeRoute, operator: Operator, refuse: Refuse): Promise<void> {
  const { freezes, clock } = deps;
  const needed = freezes.unfreezeQuorum;
  if (route.kind === 'list') {
    const now = clock.now();
    sendJson(res, 200, {
      freezes: freezes.active(now).map((f) => freezeView(f, needed)),
      recently_lifted: freezes.recentlyLifted(now).map((f) => freezeView(f, needed)),
      unfreeze_quorum: needed,
    });
    return;
  }
  if (route.kind === 'unfreeze' && !operator.isOperator) {
    refuse(403, 'SCOPE_MISSING', 'NOT_OPERATOR', `lifting a freeze needs the "operator" role; token roles are [${operator.roles.join(', ')}]`, operator.sub);
    return;
  }
  const read = await readJsonBody(req, MAX_BODY);
  if (!('value' in read)) {
    refuse(read.status, 'PROTOCOL_VIOLATION', read.detail, read.message, operator.sub);
    return;
  }
  const body = read.value;
  try {
    if (route.kind === 'unfreeze') {
      const reason = parseReason((body as { reason?: unknown } | null)?.reason);
      if (reason === undefined) {
        refuse(400, 'PROTOCOL_VIOLATION', 'BAD_REQUEST', 'body must be {"reason": "..."} (it goes into the audit log)', operator.sub);
        return;
      }
      const r = await freezes.unfreeze(route.id, operator.sub, reason);
      sendJson(res, r.status === 'lifted' ? 200 : 202, {
        status: r.status,
        ...(r.status === 'pending' ? { message: `two-person rule: ${r.freeze.unfreezeVotes.length} of ${r.needed} operators have asked to lift it; it holds until another operator does` } : {}),
        freeze: freezeView(r.freeze, r.needed),
      });
      return;
    }
    const now = clock.now();
    const parsed = parseFreezeBody(body, now, deps.assetIds());
    if (typeof parsed === 'string') {
      refuse(400, 'PROTOCOL_VIOLATION', 'BAD_REQUEST', parsed, operator.sub);
      return;
    }
    const notAllowed = freezeRefusal(operator, parsed.scope, parsed.value);
    if (notAllowed !== undefined) {
      refuse(403, 'SCOPE_MISSING', 'NOT_OPERATOR', notAllowed, operator.sub);
      return;
    }
    const f = await freezes.freeze({ ...parsed, by: operator.sub }, now);
    sendJson(res, 201, { status: 'frozen', freeze: freezeView(f, needed) });
  } catch (err) {
    if (!(err instanceof FreezeError)) throw err;
    const [status, reason] = FREEZE_ERROR_STATUS[err.code];
    refuse(status, reason, err.code, err.message, operator.sub);
  }
}
