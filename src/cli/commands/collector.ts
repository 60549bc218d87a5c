// `plantgate collector --config FILE`: the SOC-side receiver of gateways' audit streams. Runs until
// SIGINT/SIGTERM. A bad config exits 2 with every problem as file:line:column: field: problem; a
// port that cannot be bound exits 1.
import type { Command } from 'commander';
import { SourceErrors } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import type { JetStreamIntake } from '../../collector/jetstream.js';
import { cosigner } from '../../audit/checkpoint.js';
import { loadEd25519PrivateKey } from '../../audit/keys.js';
import { loadCollectorConfig, readTlsFiles } from '../../collector/config.js';

export function register(program: Command): void {
  program
    .command('collector')
    .description('receive audit streams from gateways over mutual TLS or NATS JetStream, verify each chain, tree and checkpoint, countersign as a witness, write NDJSON, OCSF and alerts')
    .requiredOption('--config <file>', 'collector config (YAML): listen {host, port}, tls {ca, cert, key}, out_dir, output {layout, ocsf}, gateways [{id, verifier_key, identity}], witness {name, key_file}, nats {servers, gateways, stream, ...}')
    .action(async (opts: { config: string }) => {
      let config;
      let tls;
      let witness;
      try {
        config = await loadCollectorConfig(opts.config);
        tls = await readTlsFiles(opts.config, config.tls);
        if (config.witness) witness = cosigner(config.witness.name, await loadEd25519PrivateKey(config.witness.keyFile));
      } catch (err) {
        if (err instanceof SourceErrors) {
          for (const e of err.errors) process.stderr.write(`${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        process.stderr.write(`${opts.config}: witness.key_file: ${(err as Error).message}\n`);
        process.exitCode = 2;
        return;
      }
      const logger = createLogger('plantgate-collector');
      let collector;
      try {
        // Loaded here, not with the CLI: `plantgate serve` would carry the collector and the NATS client.
        const { startCollector } = await import('../../collector/server.js');
        collector = await startCollector({
          host: config.listen.host,
          port: config.listen.port,
          tls,
          outDir: config.outDir,
          output: config.output,
          gateways: config.gateways,
          witness,
          logger,
        });
      } catch (err) {
        process.stderr.write(
          `plantgate collector: cannot start on ${config.listen.host}:${config.listen.port}: ${(err as Error).message}\n`,
        );
        process.exitCode = 1;
        return;
      }
      let intake: JetStreamIntake | undefined;
      if (config.nats !== undefined) {
        const n = config.nats;
        try {
          const { startJetStreamIntake } = await import('../../collector/jetstream.js');
          intake = await startJetStreamIntake({
            collector, servers: n.servers, gateways: n.gateways, stream: n.stream, subjectPrefix: n.subjectPrefix, consumerPrefix: n.consumerPrefix,
            auth: n.auth, logger, ...(n.tls ? { tls } : {}),
            ...(n.fleet !== undefined ? { fleet: n.fleet } : {}), ...(n.ackWaitMs !== undefined ? { ackWaitMs: n.ackWaitMs } : {}),
          });
        } catch (err) {
          process.stderr.write(`plantgate collector: cannot read from NATS ${n.servers.join(', ')}: ${(err as Error).message}\n`);
          await collector.close();
          process.exitCode = 1;
          return;
        }
      }
      // Tests and scripts that asked for port 0 learn the real one from this line.
      process.stdout.write(`collector listening on ${config.listen.host}:${collector.port}, writing ${config.outDir}\n`);
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          logger.info({ signal }, 'stopping');
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await intake?.close();
      await collector.close();
    });
}
