// `plantgate audit key|prove|verify|tail`: the SOC's tools for the verifiable log. `key` prints the
// signed-note verifier key of an audit (or witness) key; `prove` writes inclusion and consistency
// proof bundles from a spool; `verify` checks a spool, a proof bundle or a pair of checkpoints offline
// and prints exactly where anything breaks; `tail` follows a collector NDJSON file.
// Exit codes: 0 verified/ok, 1 verification failed or I/O error, 2 bad usage.
import { open, readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { cosignerVerifierKey, parseCosignerVerifierKey, type CosignatureVerifier } from '../../audit/checkpoint.js';
import { loadEd25519PrivateKey } from '../../audit/keys.js';
import { isKeyName, parseVerifierKey, verifierKey, type NoteVerifier } from '../../audit/note.js';
import { writeFileAtomic } from '../../core/files.js';
import { acceptLoss, scanSpool } from '../../audit/recover.js';
import { describeDamage } from '../../audit/spool.js';
import { noteSigner } from '../../audit/note.js';
import { systemClock } from '../../core/clock.js';
import { SourceErrors } from '../../core/errors.js';
import { loadGatewayConfig } from '../../gateway/config.js';
import { proveConsistency, proveInclusion, verifyCheckpointPair, verifyInclusionBundle, verifySpool, type Problem, type Witnessed } from '../../audit/offline.js';
import { readState } from '../../collector/state.js';
import { collectorConsistency, collectorInclusion } from '../../collector/prove.js';

function usage(msg: string): void {
  process.stderr.write(`plantgate audit: ${msg}\n`);
  process.exitCode = 2;
}

async function readVerifier(arg: string): Promise<NoteVerifier> {
  // --key takes the verifier key string itself or a file holding it.
  const text = /^[^+\s]+\+[0-9a-f]{8}\+/.test(arg) ? arg : (await readFile(arg, 'utf8')).trim();
  return parseVerifierKey(text);
}

/**
 * A --witnessed file: the collector's cosigned latest.checkpoint (a signed note), or its
 * <gateway>.state.json (records stored, last leaf hash, last witnessed checkpoint).
 */
async function readWitnessed(file: string): Promise<Witnessed> {
  const text = await readFile(file, 'utf8');
  if (!text.trimStart().startsWith('{')) return { source: file, note: text };
  const st = await readState(file);
  return { source: file, records: { count: st.nextSeq, lastHash: st.lastHash }, ...(st.checkpoint ? { tree: st.checkpoint } : {}) };
}

/** An outcome as one line's end: status, exception code, latency. */
function outcomeText(o: Record<string, any>): string {
  return `${String(o.status ?? '')}${o.exceptionCode ? ` exception 0x${Number(o.exceptionCode).toString(16)}` : ''} ${String(o.upstreamLatencyUs ?? 0)}us`;
}

function printProblems(problems: Problem[]): void {
  for (const p of problems) {
    const at = p.seq !== undefined ? `seq ${p.seq}` : p.checkpointSize !== undefined ? `checkpoint ${p.checkpointSize}` : p.where;
    let line = at === p.where ? `FAIL ${at}: ${p.message}` : `FAIL ${at} (${p.where}): ${p.message}`;
    if (p.expected !== undefined) line += `\n     expected ${p.expected}\n     actual   ${p.actual}`;
    process.stdout.write(`${line}\n`);
  }
}

export function register(program: Command): void {
  const audit = program.command('audit').description('check, prove and follow audit logs (RFC 9162 tree, C2SP signed checkpoints)');

  audit
    .command('key')
    .description('print the signed-note verifier key (name+keyhash+base64) of an Ed25519 audit key')
    .requiredOption('--key <file>', 'Ed25519 private key: JWK or PKCS#8 PEM')
    .requiredOption('--name <name>', 'key name = checkpoint origin (the gateway: plantgate/<gateway id>) or witness name')
    .option('--witness', 'print the tlog-cosignature/v1 (type 0x04) verifier key of a collector witness key')
    .action(async (opts: { key: string; name: string; witness?: boolean }) => {
      if (!isKeyName(opts.name)) return usage('--name must be non-empty without spaces or "+"');
      try {
        const key = await loadEd25519PrivateKey(opts.key);
        process.stdout.write(`${opts.witness ? cosignerVerifierKey(opts.name, key) : verifierKey(opts.name, key)}\n`);
      } catch (err) {
        process.stderr.write(`plantgate audit key: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });

  audit
    .command('prove')
    .description("write a proof bundle: inclusion of --seq N, or consistency from --consistency OLD_SIZE, to the latest checkpoint; from the gateway's spool, or from the collector's copy for records the gateway already deleted")
    .option('--spool <dir>', 'the gateway spool directory')
    .option('--collector <out_dir>', "the collector's output directory (its NDJSON, <gateway>.tree.hashes and the newest witnessed checkpoint); with --gateway")
    .option('--gateway <id>', 'the gateway id, with --collector')
    .option('--seq <n>', 'record to prove: {"checkpoint","index","leaf","inclusion"}')
    .option('--consistency <old_size>', 'old tree size: {"old_size","old_checkpoint","checkpoint","consistency"}')
    .option('--out <file>', 'write the bundle here instead of stdout')
    .action(async (opts: { spool?: string; collector?: string; gateway?: string; seq?: string; consistency?: string; out?: string }) => {
      const n = (s: string | undefined): number | undefined => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);
      if ((opts.seq === undefined) === (opts.consistency === undefined)) return usage('give exactly one of --seq or --consistency');
      if ((opts.spool === undefined) === (opts.collector === undefined)) return usage('give exactly one of --spool or --collector');
      if ((opts.collector === undefined) !== (opts.gateway === undefined)) return usage('--collector and --gateway go together');
      const seq = n(opts.seq);
      const old = n(opts.consistency);
      if (opts.seq !== undefined && seq === undefined) return usage('--seq must be a non-negative integer');
      if (opts.consistency !== undefined && old === undefined) return usage('--consistency must be a non-negative integer');
      try {
        const bundle =
          opts.collector !== undefined
            ? seq !== undefined
              ? await collectorInclusion(opts.collector, opts.gateway!, seq)
              : await collectorConsistency(opts.collector, opts.gateway!, old!)
            : seq !== undefined
              ? await proveInclusion(opts.spool!, seq)
              : await proveConsistency(opts.spool!, old!);
        const text = `${JSON.stringify(bundle, null, 2)}\n`;
        if (opts.out) await writeFileAtomic(opts.out, text);
        else process.stdout.write(text);
      } catch (err) {
        process.stderr.write(`plantgate audit prove: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });

  audit
    .command('verify')
    .description('verify a spool directory, a proof bundle (.json), or two checkpoints (old new [--proof consistency.json]) offline')
    .argument('<inputs...>', 'spool dir | proof.json | old.checkpoint new.checkpoint')
    .requiredOption('--key <vkey>', "the gateway's verifier key (name+hash+base64), or a file holding it")
    .option('--proof <file>', 'consistency bundle for a pair of checkpoints')
    .option('--witnessed <files...>', "with a spool: what the witness holds, which the spool must extend: the collector's <gateway>/latest.checkpoint or <gateway>.state.json")
    .option('--witness-key <vkey>', "the witness's cosignature verifier key (or a file holding it): each --witnessed checkpoint must carry its cosignature")
    .option('--json', 'print the report as JSON')
    .action(async (inputs: string[], opts: { key: string; proof?: string; witnessed?: string[]; witnessKey?: string; json?: boolean }) => {
      let verifier: NoteVerifier;
      let witness: CosignatureVerifier | undefined;
      try {
        verifier = await readVerifier(opts.key);
      } catch (err) {
        return usage(`--key: ${(err as Error).message}`);
      }
      try {
        if (opts.witnessKey !== undefined) {
          const k = opts.witnessKey;
          witness = parseCosignerVerifierKey(/^[^+\s]+\+[0-9a-f]{8}\+/.test(k) ? k : (await readFile(k, 'utf8')).trim());
        }
      } catch (err) {
        return usage(`--witness-key: ${(err as Error).message}`);
      }
      try {
        let problems: Problem[];
        let summary: string;
        const isSpool = inputs.length === 1 && (await stat(inputs[0])).isDirectory();
        if (!isSpool && (opts.witnessed || witness)) return usage('--witnessed and --witness-key go with a spool directory');
        if (isSpool) {
          const witnessed: Witnessed[] = [];
          for (const f of opts.witnessed ?? []) {
            try {
              witnessed.push(await readWitnessed(f));
            } catch (err) {
              return usage(`--witnessed ${f}: ${(err as Error).message}`);
            }
          }
          const r = await verifySpool(inputs[0], verifier, { witnessed, ...(witness ? { witness } : {}) });
          problems = r.problems;
          const lost = r.lost.map(([a, b]) => (a === b ? `${a}` : `${a}..${b}`)).join(', ');
          summary =
            `spool ${inputs[0]}: records ${r.firstSeq}..${r.firstSeq + r.records - 1}, tree size ${r.treeSize}, ${r.checkpoints} checkpoints (latest ${r.latestCheckpointSize})` +
            (lost ? `, lost and declared by AUDIT_GAP: ${lost}` : '') +
            (r.witnessed ? `, checked against ${r.witnessed} witnessed state(s)` : ' (no --witnessed: a tail cut back with every trace of it removed would not show)');
        } else if (inputs.length === 1) {
          const bundle = JSON.parse(await readFile(inputs[0], 'utf8')) as Record<string, unknown>;
          if (Array.isArray(bundle.consistency)) {
            const oldNote = typeof bundle.old_checkpoint === 'string' ? bundle.old_checkpoint : undefined;
            if (!oldNote) return usage(`${inputs[0]}: consistency bundle has no old_checkpoint: pass the old checkpoint file and --proof`);
            problems = verifyCheckpointPair(oldNote, String(bundle.checkpoint), verifier, bundle.consistency as string[]);
            summary = `consistency bundle ${inputs[0]}: from size ${String(bundle.old_size)}`;
          } else {
            problems = verifyInclusionBundle(bundle, verifier);
            summary = `inclusion bundle ${inputs[0]}: record ${String(bundle.index)}`;
          }
        } else if (inputs.length === 2) {
          const proof = opts.proof ? ((JSON.parse(await readFile(opts.proof, 'utf8')) as { consistency?: string[] }).consistency ?? []) : undefined;
          problems = verifyCheckpointPair(await readFile(inputs[0], 'utf8'), await readFile(inputs[1], 'utf8'), verifier, proof);
          summary = `checkpoints ${inputs[0]} -> ${inputs[1]}`;
        } else {
          return usage('give a spool directory, a proof bundle, or two checkpoint files');
        }
        if (opts.json) process.stdout.write(`${JSON.stringify({ ok: problems.length === 0, summary, problems }, null, 2)}\n`);
        else {
          printProblems(problems);
          process.stdout.write(`${problems.length === 0 ? 'OK' : 'FAILED'} ${summary}\n`);
        }
        process.exitCode = problems.length === 0 ? 0 : 1;
      } catch (err) {
        process.stderr.write(`plantgate audit verify: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });

  audit
    .command('recover')
    .description('show what a damaged spool lost; with --accept-loss, rewrite it so the gateway starts again and record the loss as AUDIT_GAP records (stop the gateway first)')
    .requiredOption('--config <file>', 'the gateway configuration (spool_dir, gateway_id, audit key)')
    .option('--accept-loss', 'continue without the lost records: damaged segments are copied to <spool>/damaged-<time>/, lost seqs keep their place, the collector alerts')
    .action(async (opts: { config: string; acceptLoss?: boolean }) => {
      let config;
      try {
        config = await loadGatewayConfig(opts.config);
      } catch (err) {
        if (err instanceof SourceErrors) return usage(err.message);
        throw err;
      }
      const dir = config.audit.spool_dir;
      try {
        const found = await scanSpool(dir);
        const { scan } = found;
        if (scan.damage.length === 0 && scan.undeclared.length === 0) {
          process.stdout.write(`OK spool ${dir}: nothing lost${scan.torn ? ` (a torn tail of ${scan.torn.bytes} bytes is cut when the gateway starts)` : ''}\n`);
          return;
        }
        if (!opts.acceptLoss) {
          process.stdout.write(`${describeDamage(dir, scan, opts.config)}\n`);
          process.exitCode = 1;
          return;
        }
        const key = config.audit.key_file;
        const r = await acceptLoss(dir, found, {
          gatewayId: config.gateway_id,
          clock: systemClock,
          maxBytes: config.audit.max_bytes,
          checkpoints: key === undefined ? undefined : { signer: noteSigner(`plantgate/${config.gateway_id}`, await loadEd25519PrivateKey(key)) },
          command: 'plantgate audit recover --accept-loss',
        });
        for (const g of r.gaps) {
          process.stdout.write(`AUDIT_GAP seq ${g.gapSeq}: records ${g.first}..${g.last} lost${g.unknownHashes ? ` (${g.unknownHashes} leaf hashes unknown: placeholders)` : ''}: ${g.cause}\n`);
        }
        process.stdout.write(`recovered spool ${dir}; the damaged segments as found are in ${r.damagedDir}\n`);
      } catch (err) {
        process.stderr.write(`plantgate audit recover: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });

  audit
    .command('tail')
    .description('print a collector NDJSON audit file in readable form, and follow it with --follow')
    .argument('<file>', '<out_dir>/<gateway>/<YYYY-MM-DD>.ndjson (daily layout) or <out_dir>/<gateway>.ndjson (single)')
    .option('-n, --lines <n>', 'start with the last n records', '20')
    .option('-f, --follow', 'keep printing records as they are appended')
    .action(async (file: string, opts: { lines: string; follow?: boolean }) => {
      const n = Number(opts.lines);
      if (!Number.isSafeInteger(n) || n < 0) return usage('--lines must be a non-negative integer');
      try {
        const text = await readFile(file, 'utf8');
        const lines = text.split('\n').filter((l) => l.length > 0);
        for (const l of lines.slice(Math.max(0, lines.length - n))) process.stdout.write(`${readable(l)}\n`);
        if (!opts.follow) return;
        let offset = Buffer.byteLength(text);
        let partial = '';
        const h = await open(file, 'r');
        // Polls: works on every filesystem and sees appends by another process (the collector).
        for (;;) {
          const { size } = await h.stat();
          if (size > offset) {
            const buf = Buffer.alloc(size - offset);
            await h.read(buf, 0, buf.length, offset);
            offset = size;
            const parts = (partial + buf.toString('utf8')).split('\n');
            partial = parts.pop() ?? '';
            for (const l of parts) if (l) process.stdout.write(`${readable(l)}\n`);
          }
          await new Promise((r) => setTimeout(r, 250));
        }
      } catch (err) {
        process.stderr.write(`plantgate audit tail: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}

/** One NDJSON record as one human line: time, seq, event, the fields an analyst reads first. */
export function readable(line: string): string {
  let r: Record<string, any>;
  try {
    r = JSON.parse(line) as Record<string, any>;
  } catch {
    return `(unreadable line) ${line.slice(0, 120)}`;
  }
  const head = `${String(r.time ?? '')} #${String(r.seq ?? '?')}`;
  if (r.decision) {
    const d = r.decision;
    const c = d.command ?? {};
    const who = d.subject?.workloadId ?? '(no identity)';
    const t = (c.targets ?? []).map((x: any) => `${x.table ?? x.nodeId}:${x.address ?? ''}${x.count > 1 ? `+${x.count}` : ''}`).join(',');
    const answered = d.outcome ? ` answered ${outcomeText(d.outcome)}` : '';
    return `${head} decision ${d.decision?.effect ?? '?'} ${d.decision?.reason ?? ''} ${who} ${c.operation ?? ''} ${c.assetId ?? ''} fc=${c.functionCode ?? ''} ${t} rule=${d.decision?.ruleId ?? ''}${answered}`;
  }
  if (r.outcome) return `${head} outcome of #${r.outcome.decisionSeq} ${outcomeText(r.outcome)}`;
  if (r.session) return `${head} session ${r.session.kind} ${r.session.sessionId} ${r.session.remoteAddress ?? ''} ${r.session.subject?.workloadId ?? ''} ${r.session.reason ?? ''}`;
  if (r.token) return `${head} token ${r.token.kind} ${r.token.subject?.workloadId ?? ''} jti=${r.token.subject?.jti ?? ''} ${r.token.reason ?? ''}`;
  if (r.bundle) return `${head} bundle ${r.bundle.kind} revision ${r.bundle.revision ?? 0} ${r.bundle.reason ?? ''}`;
  if (r.violation) return `${head} violation ${r.violation.sessionId} ${r.violation.remoteAddress} ${r.violation.detail}`;
  if (r.revocation) return `${head} revocation ${r.revocation.kind}=${r.revocation.value}${r.revocation.workloadId ? ` workload=${r.revocation.workloadId}` : ''} by=${r.revocation.by ?? ''} source=${r.revocation.source ?? ''} ${r.revocation.reason ?? ''}`;
  if (r.freeze) return `${head} freeze ${r.freeze.kind} ${r.freeze.freezeId} ${r.freeze.scope}${r.freeze.value ? `=${r.freeze.value}` : ''} mode=${r.freeze.mode} by=${r.freeze.by ?? ''} ${r.freeze.reason ?? ''}`;
  if (r.checkpoint) return `${head} checkpoint size ${r.checkpoint.treeSize} root ${r.checkpoint.rootHash}`;
  return `${head} ${line.slice(0, 160)}`;
}
