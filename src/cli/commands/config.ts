// `plantgate config check FILE`: every check `serve` makes before it opens anything (the schema,
// then src/gateway/preflight.ts), without starting anything. Exit 2 when serve would refuse to start.
import type { Command } from 'commander';
import { SourceErrors } from '../../core/errors.js';
import { loadGatewayConfig } from '../../gateway/config.js';
import { preflight } from '../../gateway/preflight.js';

export function register(program: Command): void {
  const config = program.command('config').description('gateway configuration tools');
  config
    .command('check')
    .description('validate a gateway configuration as serve does before it starts (schema, files, keys, certificates, bundle assets); errors name file, line and field')
    .argument('<file>', 'gateway configuration (YAML)')
    .option('--check-ports', 'also check that every listener address is free (not while the gateway runs: it holds them)')
    .action(async (file: string, opts: { checkPorts?: boolean }) => {
      let cfg;
      try {
        cfg = await loadGatewayConfig(file);
      } catch (err) {
        if (!(err instanceof SourceErrors)) throw err;
        for (const e of err.errors) process.stderr.write(`${e.message}\n`);
        process.exitCode = 2;
        return;
      }
      const report = await preflight(cfg, { ports: opts.checkPorts === true });
      for (const w of report.warnings) process.stderr.write(`warning: ${w.message}\n`);
      for (const e of report.errors) process.stderr.write(`${e.message}\n`);
      if (report.errors.length > 0) {
        process.exitCode = 2;
        return;
      }
      process.stdout.write(`${file}: ok (gateway ${cfg.gateway_id}, ${cfg.upstreams.length + cfg.opcua_upstreams.length} upstream(s))\n`);
    });
}
