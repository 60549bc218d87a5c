// `plantgate config check FILE`: validate a gateway configuration without starting anything.
import type { Command } from 'commander';
import { SourceErrors } from '../../core/errors.js';
import { loadGatewayConfig } from '../../gateway/config.js';

export function register(program: Command): void {
  const config = program.command('config').description('gateway configuration tools');
  config
    .command('check')
    .description('validate a gateway configuration file; errors name file, line and field')
    .argument('<file>', 'gateway configuration (YAML)')
    .action(async (file: string) => {
      try {
        const cfg = await loadGatewayConfig(file);
        process.stdout.write(`${file}: ok (gateway ${cfg.gateway_id}, ${cfg.upstreams.length} upstream(s))\n`);
      } catch (err) {
        if (!(err instanceof SourceErrors)) throw err;
        for (const e of err.errors) process.stderr.write(`${e.message}\n`);
        process.exitCode = 2;
      }
    });
}
