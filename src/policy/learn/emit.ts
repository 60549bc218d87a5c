// Writes what `policy learn` drafted as policy sources a person reviews and `bundle build` compiles
// (docs/policy.md, "From monitor mode to enforce"): an entry file carried over from the base
// sources (assets, issuers, limits, windows, interlocks, revocations; its rules replaced), the
// learned rules with their evidence as comments, and a policy test of observed commands. Owns the
// text of those files; never signs and never overwrites a file unless told to.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Document, isMap, isSeq, parseDocument, type Node, type YAMLMap, type YAMLSeq } from 'yaml';
import type { Example } from './observe.js';
import { describeLeftOut, type LearnedPolicy, type LearnOptions } from './rules.js';

export const LEARNED_RULES_FILE = 'learned.yaml';
export const OBSERVED_TESTS_FILE = path.join('tests', 'observed.yaml');
export const ENTRY_FILE = 'bundle.yaml';

export class EmitError extends Error {
  override readonly name = 'EmitError';
}

const TO_STRING = { lineWidth: 0, flowCollectionPadding: true } as const;

function flow(node: unknown): void {
  if (isMap(node) || isSeq(node)) (node as YAMLMap | YAMLSeq).flow = true;
}

/** A path written in `fromDir`'s sources, as seen from `toDir`. */
function rebase(value: unknown, fromDir: string, toDir: string): unknown {
  if (typeof value !== 'string' || path.isAbsolute(value)) return value;
  const rel = path.relative(toDir, path.resolve(fromDir, value));
  return rel === '' ? '.' : rel;
}

/**
 * The entry file for the learned rules: the base entry file with its comments, paths re-pointed
 * from the output directory, rules and includes replaced, learned windows added, enforce mode.
 * Interlocks kept in the base's included files are copied to files of their own.
 */
async function entryFrom(baseEntry: string, outDir: string, learned: LearnedPolicy, header: string): Promise<{ entry: string; extra: Map<string, string> }> {
  const baseDir = path.dirname(path.resolve(baseEntry));
  const doc = parseDocument(await readFile(baseEntry, 'utf8'));
  if (doc.errors.length > 0 || !isMap(doc.contents)) throw new EmitError(`${baseEntry}: not a policy entry file (compile it with bundle build to see why)`);
  const extra = new Map<string, string>();
  const includes: string[] = [LEARNED_RULES_FILE];
  const baseIncludes = doc.get('include');
  if (isSeq(baseIncludes)) {
    for (const item of baseIncludes.toJSON() as unknown[]) {
      if (typeof item !== 'string') continue;
      const abs = path.resolve(baseDir, item);
      const inc = parseDocument(await readFile(abs, 'utf8'));
      const il = isMap(inc.contents) ? inc.get('interlocks', true) : undefined;
      if (il === undefined) continue;
      const name = `interlocks-${path.basename(item)}`;
      const out = new Document({});
      out.commentBefore = ` Interlocks carried over from ${path.relative(outDir, abs)} by plantgate policy learn.`;
      out.set('interlocks', il);
      extra.set(name, out.toString(TO_STRING));
      includes.push(name);
    }
  }
  doc.delete('rules');
  doc.set('include', doc.createNode(includes, { flow: true }));
  const issuers = doc.get('issuers');
  if (isSeq(issuers)) for (let i = 0; i < issuers.items.length; i++) if (doc.hasIn(['issuers', i, 'jwks_file'])) doc.setIn(['issuers', i, 'jwks_file'], rebase(doc.getIn(['issuers', i, 'jwks_file']), baseDir, outDir));
  const assets = doc.get('assets');
  if (isSeq(assets)) for (let i = 0; i < assets.items.length; i++) if (doc.hasIn(['assets', i, 'points_from'])) doc.setIn(['assets', i, 'points_from'], rebase(doc.getIn(['assets', i, 'points_from']), baseDir, outDir));
  // A learned draft is meant to be enforced after review and replay; a monitor-mode base (the
  // observation bundle) must not pass its mode on silently.
  if (doc.hasIn(['bundle', 'mode'])) doc.deleteIn(['bundle', 'mode']);
  if (learned.windows.length > 0) {
    let windows = doc.get('windows') as YAMLSeq | undefined;
    if (!isSeq(windows)) {
      windows = doc.createNode([]) as YAMLSeq;
      doc.set('windows', windows);
    }
    for (const w of learned.windows) {
      const node = doc.createNode(w) as Node;
      flow(node);
      node.commentBefore = ' learned by plantgate policy learn';
      windows.items.push(node);
    }
  }
  doc.commentBefore = `${header}\n Carried over from ${path.relative(outDir, path.resolve(baseEntry))} (paths re-pointed); rules: ${LEARNED_RULES_FILE}.${doc.commentBefore ? `\n${doc.commentBefore}` : ''}`;
  return { entry: doc.toString(TO_STRING), extra };
}

function rulesFile(learned: LearnedPolicy, header: string, o: LearnOptions): string {
  const doc = new Document({ rules: learned.rules.map((r) => r.source) });
  const seq = doc.get('rules') as YAMLSeq;
  seq.items.forEach((item, i) => {
    const r = learned.rules[i]!;
    const node = item as YAMLMap;
    node.commentBefore = r.evidence.map((l) => ` ${l}`).join('\n');
    node.spaceBefore = i > 0;
    for (const key of ['subject', 'operations', 'points', 'function_codes', 'windows']) flow(node.get(key, true));
    for (const key of ['ranges', 'rate_limit']) {
      const list = node.get(key, true);
      if (isSeq(list)) for (const x of list.items) flow(x);
    }
    const bounds = node.get('bounds', true);
    if (isMap(bounds)) for (const b of bounds.items) flow(b.value);
  });
  doc.commentBefore = header;
  const tail: string[] = [];
  if (learned.leftOut.length > 0) {
    tail.push(` Left out: state-changing commands seen fewer than ${o.minWrites} times (allow them by hand if they belong):`);
    for (const l of learned.leftOut) tail.push(`   ${describeLeftOut(l, o.minWrites)}`);
  }
  if (learned.unexpressible.length > 0) {
    tail.push(' No rule could express:');
    for (const u of learned.unexpressible) tail.push(`   ${u.principal} ${u.operation} ${u.asset}: ${u.count} command(s), ${u.why}`);
  }
  if (tail.length > 0) doc.comment = tail.join('\n');
  return doc.toString(TO_STRING);
}

/** A policy-test command for an observed one, or undefined when the test format cannot say it. */
function testCommand(ex: Example): Record<string, unknown> | undefined {
  const c = ex.cmd;
  if (c.protocol === 'modbus') {
    const t = c.targets[0];
    if (c.targets.length !== 1 || t?.table === undefined || t.address === undefined) return undefined;
    return {
      unit_id: c.unitId,
      operation: c.operation,
      function_code: c.functionCode,
      table: t.table,
      address: t.address,
      count: t.count ?? 1,
      ...(c.rawValues ? { values: c.rawValues } : {}),
    };
  }
  if (c.operation === 'read' && c.points.length > 0) return { asset: c.assetId, operation: 'read', points: c.points };
  if (c.operation === 'write' && c.points.length > 0 && c.points.every((p) => c.values?.[p] !== undefined)) {
    return { asset: c.assetId, operation: 'write', points: Object.fromEntries(c.points.map((p) => [p, c.values![p]!])) };
  }
  return undefined;
}

function testsFile(learned: LearnedPolicy, header: string): { text: string; cases: number } {
  const cases: Record<string, unknown>[] = [];
  for (const { example: ex, ruleId } of learned.examples) {
    const command = testCommand(ex);
    if (command === undefined) continue;
    const s = ex.subject;
    cases.push({
      name: `${ruleId}: ${ex.gatewayId} seq ${ex.seq}`,
      at: new Date(ex.timeMs).toISOString(),
      subject: {
        workload: s.workloadId,
        ...(s.owner ? { owner: s.owner } : {}),
        ...(s.roles.length > 0 ? { roles: s.roles } : {}),
        ...(s.scopes.length > 0 ? { scopes: s.scopes } : {}),
        ...(s.actSub ? { act: s.actSub } : {}),
        assurance: s.assurance,
      },
      command,
      expect: { effect: 'allow', rule: ruleId },
    });
  }
  const doc = new Document({ bundle: `../${ENTRY_FILE}`, cases });
  const seq = doc.get('cases') as YAMLSeq;
  for (const item of seq.items) {
    const m = item as YAMLMap;
    for (const key of ['subject', 'command', 'expect']) flow(m.get(key, true));
  }
  doc.commentBefore = `${header}\n Observed commands the learned rules must allow (each rule's first command and the writes of\n each bounded point's lowest and highest value), at their recorded times: plantgate policy test .`;
  return { text: doc.toString(TO_STRING), cases: cases.length };
}

export interface WrittenFiles {
  entry: string;
  rules: string;
  /** undefined when no observed command could be written as a test case. */
  tests: string | undefined;
  extra: string[];
  testCases: number;
}

/** Writes the learned sources into `outDir`; refuses to replace a file unless `force`. */
export async function writeLearned(outDir: string, baseEntry: string, learned: LearnedPolicy, o: LearnOptions, header: string, force: boolean): Promise<WrittenFiles> {
  const { entry, extra } = await entryFrom(baseEntry, outDir, learned, header);
  const tests = testsFile(learned, header);
  const files = new Map<string, string>([
    [ENTRY_FILE, entry],
    [LEARNED_RULES_FILE, rulesFile(learned, header, o)],
    ...extra,
  ]);
  // A test file needs at least one case (policy test refuses an empty one).
  if (tests.cases > 0) files.set(OBSERVED_TESTS_FILE, tests.text);
  if (!force) {
    for (const name of files.keys()) {
      const p = path.join(outDir, name);
      const exists = await readFile(p).then(
        () => true,
        () => false,
      );
      if (exists) throw new EmitError(`${p} exists; choose another --out or pass --force`);
    }
  }
  await mkdir(path.join(outDir, 'tests'), { recursive: true });
  for (const [name, text] of files) await writeFile(path.join(outDir, name), text);
  return {
    entry: path.join(outDir, ENTRY_FILE),
    rules: path.join(outDir, LEARNED_RULES_FILE),
    tests: tests.cases > 0 ? path.join(outDir, OBSERVED_TESTS_FILE) : undefined,
    extra: [...extra.keys()].map((n) => path.join(outDir, n)),
    testCases: tests.cases,
  };
}
