// `plantgate policy test DIR`: runs the YAML policy test cases below DIR against the compiled
// rules, like `opa test`. Prints each failure with what was expected and what the engine said, then
// `N passed, N failed`; exit 0 all passed, 1 a case failed, 2 a test file or source is invalid.
import type { Command } from 'commander';
import { findTestFiles, runPolicyTests } from '../../policy/testing.js';
import { registerLearn } from './policy-learn.js';
import { registerReplay } from './policy-replay.js';
import { RESOLVERS } from '../../../protocols/resolvers.js';

const out = (s: string): void => void process.stdout.write(`${s}\n`);
const err = (s: string): void => void process.stderr.write(`${s}\n`);

export function register(program: Command): void {
  const policy = program.command('policy').description('policy tools: test, learn (draft rules from recorded traffic), replay (what a candidate bundle would change)');
  policy
    .command('test')
    .description('run policy test cases (YAML files in tests/ directories below DIR, or one file)')
    .argument('<dir>', 'a rules directory (e.g. rules/) or one test file')
    .option('-v, --verbose', 'also list passing cases')
    .action(async (dir: string, opts: { verbose?: boolean }) => {
      let files: string[];
      try {
        files = await findTestFiles(dir);
      } catch (e) {
        err(`plantgate policy test: cannot read ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        process.exitCode = 2;
        return;
      }
      if (files.length === 0) {
        err(`plantgate policy test: no test files below ${dir} (YAML files in a tests/ directory)`);
        process.exitCode = 2;
        return;
      }
      const run = await runPolicyTests(files, RESOLVERS);
      for (const r of run.results) {
        if (r.passed) {
          if (opts.verbose) out(`ok    ${r.file}: ${r.name}`);
          continue;
        }
        out(`FAIL  ${r.file}: ${r.name}`);
        out(`      expected ${r.expected}`);
        out(`      got      ${r.actual}`);
      }
      for (const e of run.errors) err(e.message);
      const passed = run.results.filter((r) => r.passed).length;
      const failed = run.results.length - passed;
      out(`${passed} passed, ${failed} failed${run.errors.length > 0 ? `, ${run.errors.length} error(s)` : ''}`);
      process.exitCode = run.errors.length > 0 ? 2 : failed > 0 ? 1 : 0;
    });
  registerLearn(policy);
  registerReplay(policy);
}
