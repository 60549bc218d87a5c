#!/usr/bin/env -S node --max-semi-space-size=8
// The flag bounds V8's young generation (default up to 3 × 16 MB): measured with
// test/bench/footprint.js, the gateway's RSS stays ~112-115 MB instead of ~131-134 MB under load,
// at the same CPU per command. It must be a process flag (V8 sizes the heap before any JS runs).
// The `plantgate` command. Exit codes (docs/architecture.md, "Exit codes and processes"): 0 ok, 1 failure, 2 bad usage or bad config.
import { Command, CommanderError } from 'commander';
import { register as registerApprovals } from './commands/approvals.js';
import { register as registerAudit } from './commands/audit.js';
import { register as registerBundle } from './commands/bundle.js';
import { register as registerCollector } from './commands/collector.js';
import { register as registerConfig } from './commands/config.js';
import { register as registerDemo } from './commands/demo.js';
import { register as registerFreeze } from './commands/freeze.js';
import { register as registerKeys } from './commands/keys.js';
import { register as registerPki } from './commands/pki.js';
import { register as registerPolicy } from './commands/policy.js';
import { register as registerRevoke } from './commands/revoke.js';
import { register as registerServe } from './commands/serve.js';
import { register as registerSim } from './commands/sim.js';
import { register as registerToken } from './commands/token.js';

// node-opcua (loaded only by OPC UA commands) prints its warnings to stdout, which is this
// command's output channel (tokens, tables); keep it to errors unless the user asked otherwise.
process.env.NODEOPCUA_LOG_LEVEL ??= '3';

export function buildProgram(): Command {
  const program = new Command('plantgate')
    .description('Inline enforcement proxy for industrial protocols: identity, policy and audit for every command an agent sends to a PLC')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  for (const register of [registerServe, registerSim, registerDemo, registerCollector, registerBundle, registerPki, registerKeys, registerToken, registerConfig, registerAudit, registerPolicy, registerApprovals, registerRevoke, registerFreeze]) {
    register(program);
  }
  for (const sub of program.commands) sub.exitOverride();
  program.hook('preAction', (_root, action) => {
    brokenPipe = SERVICES.has(action.name()) && action.parent === program && (action.name() !== 'demo' || action.opts().keepRunning === true) ? 'ignore' : 'exit';
  });
  return program;
}

/** Commands that run until stopped: their stdout is a log, and the gateway's audit is the record. */
const SERVICES = new Set(['serve', 'sim', 'collector', 'demo']);
let brokenPipe: 'exit' | 'ignore' = 'exit';

// `plantgate … | head`: the reader went away. A one-shot command ends at once, quietly, with the exit
// code it had so far (a write to a closed pipe is not its failure); a service keeps serving and
// its further output goes nowhere (pino drops its own log lines on EPIPE the same way).
function quietOnBrokenPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
    if (brokenPipe === 'exit') process.exit(process.exitCode ?? 0);
  });
}

async function main(): Promise<void> {
  quietOnBrokenPipe(process.stdout);
  quietOnBrokenPipe(process.stderr);
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      const ok = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help';
      process.exitCode = ok ? 0 : 2;
      return;
    }
    process.stderr.write(`plantgate: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}

await main();
