// The console's pages, server-rendered: data in, HTML out (every value escaped by html``). No
// inline script or style (the Content-Security-Policy forbids them): behaviour lives in
// static/console.js, looks in static/console.css. Owns markup only; never reads state itself.
import type { ApprovalRequest } from '../../approvals/store.js';
import { REASONS } from '../../core/reasons.js';
import type { Freeze, LiftedFreeze } from '../../freeze/store.js';
import type { DecisionFilter, DecisionRow } from './feed.js';
import { html, type Html } from './html.js';
import type { ConsoleSession } from './sessions.js';

export const NAV = [
  ['decisions', 'Live decisions'],
  ['approvals', 'Approvals'],
  ['freezes', 'Emergency freeze'],
  ['agents', 'Agents & tokens'],
  ['bundle', 'Policy bundle'],
  ['audit', 'Audit'],
  ['plcs', 'PLCs & interlocks'],
] as const;
export type PageName = (typeof NAV)[number][0];

export interface Chrome {
  session: ConsoleSession;
  /** Freezes in force, shown on every page. */
  frozen: Freeze[];
  /** Static asset URLs (content-hashed). */
  css: string;
  js: string;
  nowMs: number;
}

const iso = (ms: number | undefined): string => (ms === undefined ? '' : new Date(ms).toISOString().replace('.000Z', 'Z'));

/** "3 s", "4 min", "2 h" ago/ahead: what an operator reads at a glance. */
export function age(ms: number): string {
  const a = Math.abs(ms);
  const s = a < 60_000 ? `${Math.round(a / 1000)} s` : a < 3_600_000 ? `${Math.round(a / 60_000)} min` : a < 172_800_000 ? `${Math.round(a / 3_600_000)} h` : `${Math.round(a / 86_400_000)} d`;
  return s;
}

export function freezeScope(f: Freeze): string {
  return f.scope === 'site' ? 'the whole site' : `${f.scope} ${f.value}`;
}

function csrfField(s: ConsoleSession): Html {
  return html`<input type="hidden" name="_csrf" value="${s.csrf}">`;
}

export function layout(c: Chrome, page: PageName, title: string, body: Html): Html {
  const s = c.session;
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · plantgate</title><link rel="stylesheet" href="${c.css}"><script src="${c.js}" defer></script></head>
<body data-page="${page}">
<header><span class="brand">plantgate</span><nav>${NAV.map(([id, label]) => html`<a href="/console/${id}"${id === page ? html` aria-current="page"` : ''}>${label}</a>`)}</nav>
<form class="who" method="post" action="/console/logout">${csrfField(s)}<span>${s.operator.sub} <small>(${s.operator.roles.join(', ')}; ${s.operator.via})</small></span> <button type="submit">Sign out</button></form></header>
${c.frozen.length > 0
  ? html`<div class="frozen-banner" role="alert"><strong>EMERGENCY FREEZE in force</strong>: ${c.frozen.map((f) => html`<span>${freezeScope(f)} (${f.mode === 'all' ? 'every command' : 'writes'}) — ${f.reason}</span>`)} <a href="/console/freezes">manage</a></div>`
  : ''}
${s.flash ? html`<p class="flash ${s.flash.ok ? 'ok' : 'error'}" role="status">${s.flash.text}</p>` : ''}
<main><h1>${title}</h1>${body}</main></body></html>`;
}

export function loginPage(o: { css: string; js: string; csrf: string; error?: string; certificates: boolean }): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · plantgate</title><link rel="stylesheet" href="${o.css}"><script src="${o.js}" defer></script></head>
<body data-page="login"><main class="login"><h1>plantgate operator console</h1>
${o.error ? html`<p class="flash error" role="alert">${o.error}</p>` : ''}
<form method="post" action="/console/login" class="card">
<input type="hidden" name="_csrf" value="${o.csrf}">
<label for="token"><span>Operator token: a short-lived JWT with the <code>operator</code> role</span></label>
<textarea id="token" name="token" rows="5" required autocomplete="off" spellcheck="false"></textarea>
<button type="submit" id="sign-in">Sign in</button></form>
${o.certificates
  ? html`<form method="post" action="/console/login/certificate" class="card"><input type="hidden" name="_csrf" value="${o.csrf}">
<p>Or sign in with your operator client certificate (your browser presents it when it connects).</p><button type="submit" id="sign-in-certificate">Sign in with my certificate</button></form>`
  : ''}
</main></body></html>`;
}

// ---- decisions ----

function decisionRow(r: DecisionRow): Html {
  return html`<tr class="${r.effect}" data-seq="${r.seq}"><td>${r.at}</td><td>${r.workload}</td><td>${r.asset}</td><td>${r.operation}</td><td>${r.points.join(', ')}</td><td>${r.values}</td><td class="effect">${r.effect}</td><td class="reason">${r.reason}</td><td>${[r.rule, r.freeze, r.approval, r.interlock].filter((x) => x !== '').join(' · ')}</td></tr>`;
}

export function decisionsPage(c: Chrome, rows: DecisionRow[], f: DecisionFilter, assets: string[]): Html {
  const q = new URLSearchParams(Object.entries(f).filter(([, v]) => v !== undefined) as [string, string][]).toString();
  return layout(
    c,
    'decisions',
    'Live decisions',
    html`<form class="filters" method="get" action="/console/decisions">
<label>Agent <input name="agent" value="${f.agent ?? ''}" placeholder="part of a SPIFFE ID"></label>
<label>Asset <select name="asset"><option value="">any</option>${assets.map((a) => html`<option${a === f.asset ? html` selected` : ''}>${a}</option>`)}</select></label>
<label>Effect <select name="effect"><option value="">any</option>${(['allow', 'deny'] as const).map((e) => html`<option${e === f.effect ? html` selected` : ''}>${e}</option>`)}</select></label>
<label>Reason <select name="reason"><option value="">any</option>${REASONS.map((r) => html`<option${r === f.reason ? html` selected` : ''}>${r}</option>`)}</select></label>
<button type="submit">Filter</button></form>
<p class="live-status" id="live-status">Connecting to the live stream…</p>
<table class="decisions"><thead><tr><th>time</th><th>agent</th><th>asset</th><th>operation</th><th>points</th><th>values</th><th>effect</th><th>reason</th><th>rule / freeze / approval</th></tr></thead>
<tbody id="decision-rows" data-stream="/console/events/decisions${q ? `?${q}` : ''}">${rows.map(decisionRow)}</tbody></table>`,
  );
}

// ---- approvals ----

export function approvalsPage(c: Chrome, pending: ApprovalRequest[], decided: ApprovalRequest[], sameAsOperator: (r: ApprovalRequest) => string | undefined): Html {
  const s = c.session;
  const row = (r: ApprovalRequest): Html => {
    const blocked = sameAsOperator(r);
    const needed = r.approvers ?? 1;
    const given = r.approvals ?? [];
    return html`<article class="card approval" data-approval="${r.id}">
<h2><code>${r.id}</code> ${r.assetId} ${r.operation} ${r.values ? html`<strong>${Object.entries(r.values).map(([k, v]) => `${k} := ${v}`).join(', ')}</strong>` : r.points.join(', ')}</h2>
<dl><dt>exact command</dt><dd>${r.targets.join(', ')}${r.rawValues ? ` raw [${r.rawValues.join(', ')}]` : ''} · digest <code>${r.digest.slice(0, 16)}…</code> · rule ${r.ruleId}</dd>
<dt>requester</dt><dd>${r.workloadId}${r.actSub ? html` acting for ${r.actSub.join(' → ')}` : ''}</dd>
<dt>owner</dt><dd>${r.owner}</dd><dt>task</dt><dd>${r.taskId}: ${r.taskPurpose}</dd>
<dt>requested</dt><dd>${iso(r.requestedAtMs)} (${age(c.nowMs - r.requestedAtMs)} ago)</dd>
<dt>approve by</dt><dd>${iso(r.expiresAtMs)} (in ${age(r.expiresAtMs - c.nowMs)})</dd>
${r.executeWithinMs !== undefined ? html`<dt>execute by</dt><dd>within ${age(r.executeWithinMs)} of the last approval</dd>` : ''}
<dt>approvers</dt><dd class="rule">${needed > 1 ? html`${needed}-person rule: ${given.length} of ${needed} given${given.length ? ` (${given.map((g) => g.by).join(', ')})` : ''}; ` : ''}the approver may not be ${(r.distinctFrom ?? ['owner']).includes('owner') ? `the owner (${r.owner}), ` : ''}the agent itself, or a human it acts for</dd></dl>
${blocked !== undefined
  ? html`<p class="blocked">You cannot decide this request: ${blocked}. Another operator must.</p>`
  : html`<form method="post" action="/console/approvals/${r.id}/decide" class="decide">${csrfField(s)}
<label>Reason <input name="reason" required maxlength="500" placeholder="checked on site, ..."></label>
<button type="submit" name="verdict" value="approve" class="approve">Approve</button> <button type="submit" name="verdict" value="reject" class="reject">Reject</button></form>`}
</article>`;
  };
  return layout(
    c,
    'approvals',
    'Pending approvals',
    html`<p class="hint" id="approval-news" hidden>A new request arrived: <a href="/console/approvals">reload</a>.</p>
${pending.length === 0 ? html`<p class="empty">No request is waiting for an operator.</p>` : pending.map(row)}
<h2>Recently decided</h2>
<table><thead><tr><th>id</th><th>status</th><th>asset</th><th>points</th><th>requester</th><th>owner</th><th>decided by</th><th>reason</th></tr></thead><tbody>
${decided.map((r) => html`<tr><td><code>${r.id}</code></td><td>${r.status}</td><td>${r.assetId}</td><td>${r.points.join(', ')}</td><td>${r.workloadId}</td><td>${r.owner}</td><td>${r.decidedBy ?? ''}</td><td>${r.reason ?? ''}</td></tr>`)}
</tbody></table>`,
  );
}

// ---- freezes ----

export function freezesPage(c: Chrome, active: Freeze[], lifted: LiftedFreeze[], quorum: number, assets: string[]): Html {
  const s = c.session;
  const votes = (f: Freeze) => (quorum > 1 ? html`<p class="rule">Two-person rule: ${f.unfreezeVotes.length} of ${quorum} operators have asked to lift it${f.unfreezeVotes.length ? ` (${f.unfreezeVotes.map((v) => v.by).join(', ')})` : ''}.</p>` : '');
  return layout(
    c,
    'freezes',
    'Emergency freeze',
    html`<section class="card danger"><h2>Freeze</h2>
<p>Refuses commands from the next one on, on every open connection; no token, rule or approval outweighs it.</p>
<form method="post" action="/console/freezes" id="freeze-form">${csrfField(s)}
<label>Scope <select name="scope" id="freeze-scope"><option value="asset">asset</option><option value="site">whole site</option><option value="workload">workload (SPIFFE pattern)</option><option value="owner">owner</option></select></label>
<label>Asset / pattern / owner <input name="value" id="freeze-value" list="assets" placeholder="plc1"></label>
<datalist id="assets">${assets.map((a) => html`<option value="${a}">`)}</datalist>
<label>What <select name="mode"><option value="writes">writes, method calls, diagnostics</option><option value="all">every command (reads too)</option></select></label>
<label>Lift by itself after <select name="expires_in_sec"><option value="">never (an operator lifts it)</option><option value="900">15 min</option><option value="3600">1 h</option><option value="14400">4 h</option><option value="86400">1 day</option></select></label>
<label>Reason <input name="reason" id="freeze-reason" required maxlength="500" placeholder="leak reported on tank 1"></label>
<button type="submit" class="freeze" id="freeze-submit">Freeze now</button></form></section>
<h2>In force</h2>
${active.length === 0
  ? html`<p class="empty" id="no-freezes">Nothing is frozen.</p>`
  : active.map(
      (f) => html`<article class="card frozen" data-freeze="${f.id}"><h3><code>${f.id}</code> ${freezeScope(f)} — ${f.mode === 'all' ? 'every command' : 'writes, method calls, diagnostics'}</h3>
<p>Frozen ${iso(f.frozenAtMs)} by ${f.by}: ${f.reason}. ${f.expiresAtMs !== undefined ? `Lifts by itself ${iso(f.expiresAtMs)} (in ${age(f.expiresAtMs - c.nowMs)}).` : 'Holds until an operator lifts it.'}</p>
${votes(f)}
${s.operator.isOperator
  ? html`<form method="post" action="/console/freezes/${f.id}/unfreeze" class="unfreeze">${csrfField(s)}<label>Reason <input name="reason" required maxlength="500" placeholder="fixed, checked on site"></label> <button type="submit">Unfreeze</button></form>`
  : html`<p class="blocked">Only the operator role lifts a freeze.</p>`}
</article>`,
    )}
<h2>Recently lifted</h2>
<table><thead><tr><th>id</th><th>scope</th><th>mode</th><th>frozen by</th><th>reason</th><th>lifted</th><th>how</th></tr></thead><tbody>
${lifted.map((f) => html`<tr><td><code>${f.id}</code></td><td>${freezeScope(f)}</td><td>${f.mode}</td><td>${f.by}</td><td>${f.reason}</td><td>${iso(f.liftedAtMs)}</td><td>${f.liftedHow === 'expired' ? 'expired' : `by ${f.unfreezeVotes.map((v) => v.by).join(', ')}`}</td></tr>`)}
</tbody></table>`,
  );
}

// ---- agents ----

export interface TokenRow {
  workload: string;
  owner: string;
  task: string;
  purpose: string;
  jti: string;
  scopes: string[];
  assurance: string;
  expiresAtMs: number;
  state: string;
}

export function agentsPage(c: Chrome, tokens: TokenRow[], revocations: Array<Record<string, unknown>>): Html {
  const s = c.session;
  const revoke = (kind: 'jti' | 'sub', value: string, label: string) =>
    html`<form method="post" action="/console/revocations" class="revoke">${csrfField(s)}<input type="hidden" name="kind" value="${kind}"><input type="hidden" name="value" value="${value}"><input name="reason" required maxlength="500" placeholder="reason"> <button type="submit">${label}</button></form>`;
  return layout(
    c,
    'agents',
    'Agents and live tokens',
    html`<table><thead><tr><th>agent</th><th>owner</th><th>task</th><th>token (jti)</th><th>scopes</th><th>assurance</th><th>expires</th><th>state</th><th>revoke</th></tr></thead><tbody>
${tokens.length === 0 ? html`<tr><td colspan="9" class="empty">No agent has a token registered.</td></tr>` : ''}
${tokens.map(
  (t) => html`<tr data-workload="${t.workload}"><td>${t.workload}</td><td>${t.owner}</td><td>${t.task}: ${t.purpose}</td><td><code>${t.jti}</code></td><td>${t.scopes.join(' ')}</td><td>${t.assurance}</td><td>${iso(t.expiresAtMs)} (${t.expiresAtMs > c.nowMs ? `in ${age(t.expiresAtMs - c.nowMs)}` : `${age(c.nowMs - t.expiresAtMs)} ago`})</td><td>${t.state}</td>
<td>${s.operator.isOperator ? html`${revoke('jti', t.jti, 'Revoke token')}${revoke('sub', t.workload, "Revoke all the agent's tokens")}` : ''}</td></tr>`,
)}</tbody></table>
<h2>Revocations in force</h2>
<table><thead><tr><th>kind</th><th>value</th><th>reason</th><th>revoked</th><th>by</th><th>source</th></tr></thead><tbody>
${revocations.map((r) => html`<tr><td>${String(r.kind)}</td><td>${String(r.value)}</td><td>${String(r.reason)}</td><td>${String(r.revoked_at)}</td><td>${String(r.by)}</td><td>${String(r.source)}</td></tr>`)}
</tbody></table>`,
  );
}

// ---- bundle, audit, PLCs: status tables ----

export type Rows = Array<[string, string | Html]>;

function facts(rows: Rows): Html {
  return html`<dl class="facts">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>`;
}

export function bundlePage(c: Chrome, status: Rows, lastLoad: Rows, changes: { from: number; to: number; lines: string[] } | undefined): Html {
  return layout(
    c,
    'bundle',
    'Policy bundle',
    html`<section class="card"><h2>Active bundle</h2>${facts(status)}</section>
<section class="card"><h2>Last load</h2>${facts(lastLoad)}</section>
<section class="card"><h2>What changed since the previous bundle</h2>
${changes === undefined
  ? html`<p class="empty">No earlier bundle was active since this gateway started.</p>`
  : html`<p>Revision ${changes.from} → ${changes.to}:</p>${changes.lines.length === 0 ? html`<p class="empty">No change in assets, rules, windows or issuers.</p>` : html`<ul class="changes">${changes.lines.map((l) => html`<li><code>${l}</code></li>`)}</ul>`}`}
</section>`,
  );
}

export function auditPage(c: Chrome, spool: Rows, checkpoint: Rows, witness: Rows): Html {
  return layout(
    c,
    'audit',
    'Audit',
    html`<section class="card"><h2>Spool and shipping</h2>${facts(spool)}</section>
<section class="card"><h2>Last signed checkpoint</h2>${facts(checkpoint)}</section>
<section class="card"><h2>Witness</h2>${facts(witness)}</section>`,
  );
}

export interface UpstreamRow {
  asset: string;
  endpoint: string;
  up: boolean;
  reconnects: number;
}

export interface InputRow {
  name: string;
  value: number;
  ageMs: number;
  maxAgeMs: number;
}

export function plcsPage(c: Chrome, upstreams: UpstreamRow[], inputs: InputRow[] | 'broken' | undefined): Html {
  return layout(
    c,
    'plcs',
    'PLC connections and interlock inputs',
    html`<table><thead><tr><th>asset</th><th>endpoint</th><th>state</th><th>reconnects</th></tr></thead><tbody>
${upstreams.map((u) => html`<tr class="${u.up ? 'up' : 'down'}"><td>${u.asset}</td><td>${u.endpoint}</td><td>${u.up ? 'up' : 'DOWN'}</td><td>${u.reconnects}</td></tr>`)}
</tbody></table>
<h2>Process inputs the gateway reads itself (interlock inputs, max_step bases)</h2>
${inputs === undefined
  ? html`<p class="empty">The active bundle has no interlocks and no max_step: the gateway reads no process values itself.</p>`
  : inputs === 'broken'
    ? html`<p class="flash error">The bundle's interlocks could not be set up: every state-changing command is refused.</p>`
    : html`<table><thead><tr><th>input</th><th>value</th><th>age</th><th>max age</th><th>state</th></tr></thead><tbody>
${inputs.map((i) => {
  const fresh = Number.isFinite(i.ageMs) && i.ageMs <= i.maxAgeMs;
  return html`<tr class="${fresh ? 'up' : 'down'}"><td>${i.name}</td><td>${Number.isNaN(i.value) ? 'never read' : i.value}</td><td>${Number.isFinite(i.ageMs) ? `${Math.round(i.ageMs)} ms` : '—'}</td><td>${i.maxAgeMs} ms</td><td>${fresh ? 'fresh' : 'STALE (commands that depend on it are refused)'}</td></tr>`;
})}</tbody></table>`}`,
  );
}
