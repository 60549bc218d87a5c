// `plantgate serve --config FILE`: run the gateway until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { SourceErrors } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { loadGatewayConfig } from '../../gateway/config.js';
import { startGateway } from '../../gateway/gateway.js';
import { describeDamage, SpoolDamageError } from '../../audit/spool.js';

export function register(program: Command): void {
  program
    .command('serve')
    .description('run the gateway: Modbus/TCP Security listener, agent API, policy, audit spool and shipper')
    .requiredOption('--config <file>', 'gateway configuration (YAML)')
    .action(async (opts: { config: string }) => {
      let config;
      try {
        config = await loadGatewayConfig(opts.config);
      } catch (err) {
        if (err instanceof SourceErrors) {
          for (const e of err.errors) process.stderr.write(`${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw err;
      }
      const logger = createLogger('plantgate');
      let gateway;
      try {
        gateway = await startGateway(config, { logger });
      } catch (err) {
        // A damaged spool: say what is wrong and the documented way out, and do not start.
        if (err instanceof SpoolDamageError) {
          process.stderr.write(`plantgate serve: ${describeDamage(err.dir, err.scan, opts.config)}\n`);
          process.exitCode = 1;
          return;
        }
        throw err;
      }
      const onHup = () => {
        logger.info('SIGHUP: reloading configuration and bundle');
        loadGatewayConfig(opts.config)
          .then((next) => gateway.reload(next))
          .then(
            (ok) => logger.info({ ok }, 'reload finished'),
            (err: unknown) => logger.error({ err: (err as Error).message }, 'reload refused; keeping the running configuration'),
          );
      };
      process.on('SIGHUP', onHup);
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal }, 'stopping: draining in-flight commands and flushing the audit spool');
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      process.off('SIGHUP', onHup);
      // Shutdown is bounded: if anything still holds the event loop after the drain and the audit
      // flush, the process exits anyway (unref'd: it never delays a clean exit).
      const deadline = setTimeout(() => {
        logger.error({ step: closing, resources: process.getActiveResourcesInfo() }, 'shutdown did not complete within its bound; exiting');
        process.exit(1);
      }, config.drain_ms + 10_000);
      deadline.unref();
      let closing = 'gateway';
      await gateway.close(config.drain_ms, (step) => (closing = step));
      closing = 'event loop';
      logger.info('stopped');
    });
}
