// From monitor mode to enforce, end to end (docs/policy.md): traffic from three agents goes through
// the real gateway while it runs the demo bundle in monitor mode; `plantgate policy learn` drafts
// rules from the collector's NDJSON; the draft compiles, passes its own policy test and, replayed
// over the same traffic from the gateway's spool, refuses only the write it left out; signed and
// loaded into the gateway it enforces the learned envelope; `policy replay` of the traffic against
// the demo bundle lists exactly the commands the demo bundle would have denied.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { connectModbusAgent, exceptionCodeOf, putToken, type ModbusAgent } from '../../src/cli/demo/agent.js';
import { startLab, type DemoAgent, type Lab } from '../../src/cli/demo/lab.js';
import { agent, allowed, denied, modbus, Recorder, T0 } from '../unit/policy/recorded.js';
import { assertBuilt, run } from './cli.js';

interface JsonRecord {
  seq: number;
  decision?: { subject?: { workloadId?: string }; command?: { points?: string[] }; decision?: { effect?: string; reason?: string; shadowReason?: string } };
}

interface ReplayJson {
  summary: { commands: number; newly_denied: number; newly_allowed: number; reason_changed: number; interlock_unknown: number; unchanged: number };
  changes: { kind: string; seq: number; workload: string; candidate: { reason: string; ruleId: string }; recorded: { shadow?: string } }[];
  failed: boolean;
}

const SETPOINT = 0; // holding 0, tank1.setpoint, 0.1 %
const SPEED = 1; // holding 1, pump1.speed, rpm
const PUMP_RUN = 0; // coil 0
const VALVE = 1; // coil 1, valve1.open
const AUTO = 2; // coil 2, control.auto

// Steps of one story, in order (make test-shuffle keeps it): record, learn, replay, sign and enforce.
describe('policy learn and replay on traffic recorded by the real gateway in monitor mode', { shuffle: false }, () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  const agents = {} as Record<DemoAgent, ModbusAgent>;
  let ndjson: string;
  let learnedDir: string;
  /** Seqs of the decision records the demo bundle (in monitor mode) said it would deny. */
  let wouldDeny: Map<number, string>;

  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-learn-'));
    learnedDir = path.join(dir, 'learned');
    // Now: the learned bundle is built (valid from) the real time and loaded by this gateway.
    clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: path.join(dir, 'lab'), gatewayClock: clock, clock: new ManualClock(), bundleMode: 'monitor' });
    for (const name of ['optimizer', 'reporter', 'planner'] as const) {
      const creds = await lab.credentials(name);
      const put = await putToken(lab.gateway.agentApi.host, lab.gateway.agentApi.port, creds, await lab.token(name, { now: clock.now(), ttlSec: 900 }));
      expect(put.status).toBe(200);
      agents[name] = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
    }
    const { optimizer, reporter, planner } = agents;
    // One command every 1.5 s of gateway time, so the recorded rates look like a real agent's.
    const step = async (send: () => Promise<unknown>): Promise<void> => {
      clock.advance(1500);
      // The interlock on pump1.run reads the tank level: keep it fresh at the gateway's time.
      await lab.gateway.processImage()?.pollNow();
      await send();
    };
    for (let i = 0; i < 12; i++) await step(() => reporter.client.readInputRegisters(0, 1));
    for (let i = 0; i < 6; i++) await step(() => reporter.client.readHoldingRegisters(0, 2));
    for (const v of [400, 450, 500, 550, 600, 450, 500]) await step(() => optimizer.client.writeRegister(SETPOINT, v));
    for (const on of [true, false, true, false]) await step(() => optimizer.client.writeCoil(PUMP_RUN, on));
    // What the demo bundle denies, let through by monitor mode:
    for (let i = 0; i < 3; i++) await step(() => optimizer.client.writeRegister(SETPOINT, 900)); // VALUE_OUT_OF_BOUNDS
    for (let i = 0; i < 3; i++) await step(() => optimizer.client.writeCoil(AUTO, false)); // NO_MATCHING_RULE
    for (let i = 0; i < 3; i++) await step(() => planner.client.writeCoil(VALVE, true)); // APPROVAL_REQUIRED
    await step(() => reporter.client.writeRegister(SETPOINT, 500)); // NO_MATCHING_RULE (and a read-only token)
    // Allowed by the demo bundle, but seen only once: learn leaves it out.
    await step(() => optimizer.client.writeRegister(SPEED, 1200));
    const shipped = await lab.waitShipped();
    ndjson = shipped.file;
    const records = (await readFile(ndjson, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as JsonRecord);
    wouldDeny = new Map(records.filter((r) => r.decision?.decision?.shadowReason).map((r) => [r.seq, r.decision!.decision!.shadowReason!]));
  }, 120_000);

  afterAll(async () => {
    for (const a of Object.values(agents)) await a?.close();
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('records every command as allowed, with what the demo bundle would have denied as shadow', () => {
    expect([...wouldDeny.values()].sort()).toEqual([
      'APPROVAL_REQUIRED', 'APPROVAL_REQUIRED', 'APPROVAL_REQUIRED',
      'NO_MATCHING_RULE', 'NO_MATCHING_RULE', 'NO_MATCHING_RULE', 'NO_MATCHING_RULE',
      'VALUE_OUT_OF_BOUNDS', 'VALUE_OUT_OF_BOUNDS', 'VALUE_OUT_OF_BOUNDS',
    ]);
  });

  it('learns rules that compile, pass their own policy test and allow every learned command', async () => {
    const learned = await run(['policy', 'learn', '--from', lab.collectorDir, '--base', 'rules/demo/bundle.yaml', '--out', learnedDir, '--quiet']);
    expect(learned.stderr).toBe('');
    expect(learned.code).toBe(0);
    expect(learned.stdout).toContain('refuses 0 learned command(s)');
    expect(learned.stdout).toMatch(/policy test: [1-9]\d* passed, 0 failed/);
    // Seen once: left out and listed.
    expect(learned.stdout).toMatch(/left out[^\n]*\n\s+spiffe:\/\/plant\.example\/agent\/optimizer write plc1 pump1\.speed: seen 1 time/);
    expect(learned.stdout).toContain("the token lacked the 'write' scope");
    const rules = await readFile(path.join(learnedDir, 'learned.yaml'), 'utf8');
    // The envelope of what the optimizer wrote (40 % .. 90 %), widened by 10 % of the span.
    expect(rules).toMatch(/id: learned-agent-optimizer-plc1-write[\s\S]*tank1\.setpoint: \{ min: 35, max: 95 \}/);
    expect(rules).toMatch(/# learned-agent-optimizer-plc1-write: 18 commands/);

    const key = path.join(lab.stateDir, 'keys', 'policy.private.jwk.json');
    const built = await run(['bundle', 'build', '--src', path.join(learnedDir, 'bundle.yaml'), '--key', key, '--revision', '2', '--out', path.join(dir, 'learned.jws')]);
    expect(built.stderr).toBe('');
    expect(built.code).toBe(0);
    const tested = await run(['policy', 'test', learnedDir]);
    expect(tested.code).toBe(0);
  });

  it('replays the spool against the learned rules: only the left-out write and the read-only token\'s write are refused', async () => {
    const replay = await run(['policy', 'replay', '--bundle', path.join(learnedDir, 'bundle.yaml'), '--from', lab.spoolDir, '--json', '--quiet']);
    expect(replay.code).toBe(0);
    const r = JSON.parse(replay.stdout) as ReplayJson;
    expect(r.summary.commands).toBe(40);
    expect(r.changes.map((c) => [c.workload.split('/').pop(), c.candidate.reason])).toEqual([
      ['reporter', 'NO_MATCHING_RULE'],
      ['optimizer', 'NO_MATCHING_RULE'],
    ]);
    expect(r.summary.newly_allowed).toBe(0);
    // pump1.run := 1 is guarded by an interlock whose inputs the audit does not hold for allowed writes.
    expect(r.summary.interlock_unknown).toBe(2);
  });

  it('replays a signed candidate, verified against the pinned policy keys, and refuses one signed by a key it does not pin', async () => {
    const jws = path.join(dir, 'learned.jws');
    const pinned = path.join(lab.stateDir, 'keys', 'policy.jwks.json');
    const verified = await run(['policy', 'replay', '--bundle', jws, '--trust', pinned, '--from', lab.spoolDir, '--json', '--quiet']);
    expect(verified.stderr).toBe('');
    expect(verified.code).toBe(0);
    const r = JSON.parse(verified.stdout) as ReplayJson & { bundle: { revision: number; provenance: string } };
    expect(r.bundle).toMatchObject({ revision: 2, provenance: expect.stringContaining('signature VERIFIED') });
    expect(r.changes.map((c) => [c.workload.split('/').pop(), c.candidate.reason])).toEqual([
      ['reporter', 'NO_MATCHING_RULE'],
      ['optimizer', 'NO_MATCHING_RULE'],
    ]);
    const unchecked = await run(['policy', 'replay', '--bundle', jws, '--from', lab.spoolDir, '--quiet']);
    expect(unchecked.code).toBe(0);
    expect(unchecked.stdout).toContain('signature NOT CHECKED');
    const foreign = await run(['policy', 'replay', '--bundle', jws, '--trust', 'fixtures/keys/dev-issuer.jwks.json', '--from', lab.spoolDir, '--quiet']);
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toMatch(/learned\.jws: refused: UNKNOWN_KEY/);
  });

  it('learned with --min-writes 1, allows every command of the traffic but the write of a token without the write scope', async () => {
    const everyWrite = path.join(dir, 'learned-every-write');
    const learned = await run(['policy', 'learn', '--from', lab.spoolDir, '--base', 'rules/demo/bundle.yaml', '--out', everyWrite, '--min-writes', '1', '--no-check', '--quiet']);
    expect(learned.code).toBe(0);
    expect(learned.stdout).not.toContain('left out');
    const replay = await run(['policy', 'replay', '--bundle', path.join(everyWrite, 'bundle.yaml'), '--from', lab.spoolDir, '--json', '--quiet']);
    expect(replay.code).toBe(0);
    const r = JSON.parse(replay.stdout) as ReplayJson;
    expect(r.summary.commands).toBe(40);
    // A rule requires the operation's scope: allowing a read-only token to write is for a reviewer.
    expect(r.changes.map((c) => [c.workload.split('/').pop(), c.candidate.reason])).toEqual([['reporter', 'NO_MATCHING_RULE']]);
    expect(r.summary.newly_denied).toBe(1);
    expect(r.summary.unchanged + r.summary.interlock_unknown).toBe(39);
  });

  it('lists exactly the commands the demo bundle denies when the traffic is replayed against it', async () => {
    const replay = await run(['policy', 'replay', '--bundle', 'rules/demo/bundle.yaml', '--from', ndjson, '--json', '--quiet', '--fail-on', 'newly-denied']);
    expect(replay.code).toBe(1);
    const r = JSON.parse(replay.stdout) as ReplayJson;
    expect(r.failed).toBe(true);
    expect(r.summary.newly_denied).toBe(wouldDeny.size);
    expect(new Map(r.changes.map((c) => [c.seq, c.candidate.reason]))).toEqual(wouldDeny);
    expect(r.changes.every((c) => c.kind === 'newly-denied' && c.recorded.shadow === c.candidate.reason)).toBe(true);
    expect(r.summary.newly_allowed + r.summary.reason_changed).toBe(0);

    // Monitor mode let everything through: nothing can be newly allowed.
    const allowedOnly = await run(['policy', 'replay', '--bundle', 'rules/demo/bundle.yaml', '--from', ndjson, '--quiet', '--fail-on', 'newly-allowed']);
    expect(allowedOnly.code).toBe(0);
    expect(allowedOnly.stdout).toContain('ok: no newly-allowed (--fail-on)');

    const table = await run(['policy', 'replay', '--bundle', 'rules/demo/bundle.yaml', '--from', ndjson, '--quiet']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/newly denied\s+10/);
    expect(table.stdout).toMatch(/newly-denied\s+3\s+spiffe:\/\/plant\.example\/agent\/optimizer\s+plc1\s+write\s+tank1\.setpoint\s+allow ALLOWED \(optimizer-setpoint\) shadow VALUE_OUT_OF_BOUNDS\s+deny VALUE_OUT_OF_BOUNDS \(optimizer-setpoint\)/);
  });

  it('enforces the learned envelope once signed and loaded: a setpoint outside it is refused, one inside passes', async () => {
    const key = path.join(lab.stateDir, 'keys', 'policy.private.jwk.json');
    const built = await run(['bundle', 'build', '--src', path.join(learnedDir, 'bundle.yaml'), '--key', key, '--revision', '3', '--out', lab.bundleFile]);
    expect(built.code).toBe(0);
    expect(await lab.gateway.reloadBundle('test')).toBe(true);
    expect(lab.gateway.policy.engine?.monitor).toBe(false);
    clock.advance(1500);
    let code: number | undefined;
    try {
      await agents.optimizer.client.writeRegister(SETPOINT, 990);
    } catch (err) {
      code = exceptionCodeOf(err);
    }
    expect(code).toBe(0x03);
    expect(lab.sim.read('tank1.setpoint')).not.toBe(99);
    clock.advance(1500);
    await agents.optimizer.client.writeRegister(SETPOINT, 520);
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(52, 5);
  });
});

describe('policy learn and replay refuse bad usage with exit 2 and a message naming the problem', () => {
  beforeAll(() => assertBuilt());

  it.each([
    [['policy', 'replay', '--bundle', 'rules/demo/bundle.yaml', '--from', 'no/such/spool'], /--from no\/such\/spool: cannot read \(ENOENT\)/],
    [['policy', 'replay', '--bundle', 'rules/demo/bundle.yaml', '--from', 'rules', '--fail-on', 'sometimes'], /--fail-on must be newly-denied or newly-allowed, got 'sometimes'/],
    [['policy', 'replay', '--bundle', 'rules/demo/tests/demo.yaml', '--from', 'fixtures/frames/fc0.hex'], /--from fixtures\/frames\/fc0.hex: not a record NDJSON file/],
    [['policy', 'replay', '--bundle', 'rules/demo/bundle.yaml', '--from', 'rules', '--since', 'yesterday'], /--since must be an ISO 8601 instant/],
    [['policy', 'learn', '--from', 'rules', '--base', 'rules/demo/bundle.yaml', '--out', 'x', '--time-zone', 'Mars/Olympus'], /--time-zone: unknown time zone 'Mars\/Olympus'/],
    [['policy', 'learn', '--from', 'rules', '--base', 'rules/demo/bundle.yaml', '--out', 'x', '--margin', '-5'], /--margin must be a number in 0..1000, got '-5'/],
  ])('%j', async (args, message) => {
    const r = await run(args as string[]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});

describe('policy replay exit codes and progress on a recorded spool', () => {
  let dir: string;
  let spool: string;

  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-replay-exit-'));
    spool = path.join(dir, 'spool');
    await mkdir(spool);
    // Under an older bundle: a setpoint of 50 % refused (the demo bundle allows it), a read allowed.
    const rec = new Recorder();
    rec.decision(T0, modbus('write', 6, 'holding', 0, [500]), agent('optimizer'), denied('NO_MATCHING_RULE'));
    rec.decision(T0 + 1000, modbus('read', 4, 'input', 0), agent('reporter', { scopes: ['read'] }), allowed('agents-read-plant'));
    await rec.writeSpool(spool);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const replay = (...extra: string[]): ReturnType<typeof run> => run(['policy', 'replay', '--bundle', 'rules/demo/bundle.yaml', '--from', spool, ...extra]);

  it('exits 0 when no --fail-on condition holds, and 1 when one does', async () => {
    const none = await replay('--quiet', '--fail-on', 'newly-denied');
    expect(none.code).toBe(0);
    expect(none.stdout).toMatch(/newly allowed\s+1\b/);
    expect(none.stdout).toContain('ok: no newly-denied (--fail-on)');

    const holds = await replay('--quiet', '--fail-on', 'newly-allowed');
    expect(holds.code).toBe(1);
    expect(holds.stdout).toContain('FAIL: newly-allowed (--fail-on)');

    const json = await replay('--quiet', '--json', '--fail-on', 'newly-denied', 'newly-allowed');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ fail_on: ['newly-denied', 'newly-allowed'], failed: true, summary: { newly_allowed: 1, newly_denied: 0 } });

    // Without --fail-on a change is a finding, not a failure.
    expect((await replay('--quiet')).code).toBe(0);
  });

  it('replays only the commands recorded in --since .. --until, and a record given twice (spool and its copy) once', async () => {
    const between = new Date(T0 + 500).toISOString();
    type Scan = { records: number; records_in_range: number; duplicates_skipped: number; summary: { commands: number; newly_allowed: number } };
    const after = await replay('--quiet', '--json', '--since', between);
    expect(after.code).toBe(0);
    // The read's decision and its outcome record.
    expect(JSON.parse(after.stdout)).toMatchObject({ records_in_range: 2, summary: { commands: 1, newly_allowed: 0 } });
    const before = await replay('--quiet', '--json', '--until', between);
    expect(before.code).toBe(0);
    expect(JSON.parse(before.stdout)).toMatchObject({ records_in_range: 1, summary: { commands: 1, newly_allowed: 1 } });

    const twice = await run(['policy', 'replay', '--bundle', 'rules/demo/bundle.yaml', '--from', spool, spool, '--quiet', '--json']);
    expect(twice.code).toBe(0);
    const j = JSON.parse(twice.stdout) as Scan;
    expect(j.records).toBe(2 * j.records_in_range);
    expect(j.duplicates_skipped).toBe(j.records_in_range);
    expect(j.summary.commands).toBe(2);
  });

  it('exits 1 naming the damage when a record of the input cannot be read, and replays the rest', async () => {
    const damaged = path.join(dir, 'damaged');
    await mkdir(damaged);
    const seg = await readFile(path.join(spool, `${'0'.repeat(16)}.seg`));
    // A byte of the first record flipped: its CRC fails, and valid records follow it.
    seg[12] = seg[12]! ^ 0xff;
    await writeFile(path.join(damaged, `${'0'.repeat(16)}.seg`), seg);
    const r = await run(['policy', 'replay', '--bundle', 'rules/demo/bundle.yaml', '--from', damaged, '--quiet', '--json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('1 damaged or lost input record(s); the replay covers what could be read');
    const j = JSON.parse(r.stdout) as { input_problems: { count: number; first: { where: string }[] }; summary: { commands: number } };
    expect(j.input_problems.count).toBe(1);
    expect(j.input_problems.first[0]!.where).toContain('0000000000000000.seg');
    expect(j.summary.commands).toBe(1);
  });

  it('prints a progress line on stderr (records, bytes, rate, memory) unless --quiet', async () => {
    const r = await replay('--json');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^replay: 3 records, [\d.]+ MiB of [\d.]+ MiB \(100%\), [\d,]+ records\/s, rss [\d.]+ MiB$/m);
    expect((await replay('--json', '--quiet')).stderr).toBe('');
  });

  it.each([
    ['replay', /--fail-on <kinds\.\.\.>[\s\S]*Exit codes: 0 replayed[\s\S]*1 a --fail-on condition holds[\s\S]*2 bad usage/],
    ['learn', /--min-writes <n>[\s\S]*--margin <percent>[\s\S]*Exit codes: 0 drafted[\s\S]*2 bad usage/],
  ])('policy %s --help describes its options and exit codes', async (command, text) => {
    const r = await run(['policy', command, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: plantgate policy ${command}`);
    expect(r.stdout).toMatch(text);
  });
});
