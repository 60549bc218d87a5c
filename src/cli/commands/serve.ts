// `plantgate serve --config FILE`: run the gateway until SIGINT/SIGTERM. It starts fully (every
// listener bound, ready) or exits non-zero having released everything it opened, naming the
// cause: 2 for the configuration (schema, preflight, a listener address in use), 1 at run time.
import v8 from 'node:v8';
import type { Command } from 'commander';
import { SourceErrors } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { loadGatewayConfig, type GatewayConfig } from '../../gateway/config.js';
import { startGateway } from '../../gateway/gateway.js';
import { listenerAddresses, preflight } from '../../gateway/preflight.js';
import { describeDamage, SpoolDamageError } from '../../audit/spool.js';

/**
 * How far V8 lets the gateway's heap grow past what its last full collection kept: 20 %. Its live
 * heap is ~35 MB; what grows under load is garbage promoted out of the young generation, left
 * until V8's own limit (~110 MB of heap) - RSS 105 -> 165 MB over 100,000 commands, then down.
 * With this, RSS stays at ~120 MB from 25,000 commands on, for ~5 % more CPU per command
 * (footprint bench, docs/performance.md, Session 7). Set here, not on the `plantgate` command
 * line: the collector keeps whole batches alive on purpose and lost a quarter of its rate with it.
 * V8 reads the flag at every collection, so setting it at run time takes effect. `memory:
 * throughput` in the config leaves V8's default for a plant that prefers the CPU.
 */
const GATEWAY_HEAP_GROWTH = '--heap-growing-percent=20';

/** Errors of binding a listener that mean the configuration names an address this host cannot give. */
const BIND_ERRORS: Record<string, string> = { EADDRINUSE: 'is in use', EACCES: 'needs privileges to bind', EADDRNOTAVAIL: 'is not an address of this machine' };

/** The listener field a bind error is about (the error carries the address and port it tried). */
function bindFailure(config: GatewayConfig, err: unknown): string | undefined {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e.syscall !== 'listen' || e.code === undefined || BIND_ERRORS[e.code] === undefined) return undefined;
  const candidates = listenerAddresses(config).filter((x) => x.port === e.port);
  const l = candidates.find((x) => x.host === e.address) ?? candidates[0];
  const field = l === undefined ? 'a listener' : l.field.join('.');
  return `${config.file}: ${field}: ${e.address ?? '?'}:${e.port ?? '?'} ${BIND_ERRORS[e.code]}`;
}

/**
 * Ends a start that failed: what the gateway opened is closed already; if anything still holds
 * the event loop, the process exits anyway rather than run without serving.
 */
function fail(code: 1 | 2, message: string): void {
  process.stderr.write(`plantgate serve: ${message}\n`);
  process.exitCode = code;
  setTimeout(() => {
    process.stderr.write(`plantgate serve: still open after the failed start, closed by exiting: ${process.getActiveResourcesInfo().join(', ')}\n`);
    process.exit(code);
  }, 2000).unref();
}

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
      // The same checks as `config check`, before anything is opened (docs/configuration.md).
      const report = await preflight(config);
      for (const w of report.warnings) process.stderr.write(`warning: ${w.message}\n`);
      if (report.errors.length > 0) {
        for (const e of report.errors) process.stderr.write(`${e.message}\n`);
        process.exitCode = 2;
        return;
      }
      if (config.memory === 'flat') v8.setFlagsFromString(GATEWAY_HEAP_GROWTH);
      const logger = createLogger('plantgate');
      let gateway;
      try {
        gateway = await startGateway(config, { logger });
      } catch (err) {
        // A damaged spool: say what is wrong and the documented way out, and do not start.
        if (err instanceof SpoolDamageError) return fail(1, describeDamage(err.dir, err.scan, opts.config));
        const bind = bindFailure(config, err);
        if (bind !== undefined) return fail(2, bind);
        return fail(1, `could not start: ${(err as Error).message}`);
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
