// `plantgate sim --plant FILE`: serve simulated PLCs over Modbus/TCP until SIGINT/SIGTERM.
// A bad plant file exits 2 with every problem as file:line:column: field: problem; a port that
// cannot be bound exits 1.
import type { Command } from 'commander';
import { SourceErrors } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { loadPlant, type Plant } from '../../sim/plant.js';
import { startSimulator } from '../../sim/modbus-server.js';

function parsePort(text: string): number | undefined {
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

export function register(program: Command): void {
  program
    .command('sim')
    .description('run simulated PLCs (a process model behind each plant point map) over Modbus/TCP')
    .requiredOption('--plant <file>', 'plant definition (YAML), e.g. fixtures/plants/water-treatment.yaml')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'Modbus/TCP port (0 = any free port)', '5020')
    .action(async (opts: { plant: string; host: string; port: string }) => {
      const port = parsePort(opts.port);
      if (port === undefined) {
        process.stderr.write(`plantgate sim: --port must be an integer 0..65535, not "${opts.port}"\n`);
        process.exitCode = 2;
        return;
      }
      let plant: Plant;
      try {
        plant = await loadPlant(opts.plant);
      } catch (err) {
        if (err instanceof SourceErrors) {
          for (const e of err.errors) process.stderr.write(`${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw err;
      }
      const logger = createLogger('plantgate-sim');
      let sim;
      try {
        sim = await startSimulator({ plant, host: opts.host, port, logger });
      } catch (err) {
        // SourceErrors here: the plant parses but its model lacks points it needs.
        if (err instanceof SourceErrors) {
          for (const e of err.errors) process.stderr.write(`${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        process.stderr.write(`plantgate sim: cannot listen on ${opts.host}:${port}: ${(err as Error).message}\n`);
        process.exitCode = 1;
        return;
      }
      logger.info(
        {
          plant: plant.name,
          endpoint: `modbus+tcp://${sim.host}:${sim.port}`,
          plcs: plant.plcs.map((p) => ({ id: p.id, unitId: p.unitId, points: p.points.length, model: p.model ?? null })),
        },
        'simulator serving Modbus/TCP',
      );
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          logger.info({ signal }, 'stopping');
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await sim.close();
    });
}
