// `plantgate sim --plant FILE`: serve simulated PLCs over Modbus/TCP until SIGINT/SIGTERM, with
// process time under control (--seed, --speed, --step), faults (--fault), a scenario timeline
// (--scenario), an HTTP JSON API (--api-port) and a live terminal view (--view).
// A bad plant, scenario or fault exits 2 with file:line:column: field: problem (or the field);
// a port that cannot be bound exits 1.
import type { Command } from 'commander';
import { ManualClock, type Clock } from '../../core/clock.js';
import { SourceErrors } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import type { SimApiHandle } from '../../sim/http-api.js';
import type { SimHandle } from '../../sim/modbus-server.js';
import type { OpcuaSimHandle } from '../../sim/opcua-server.js';
import { loadPlant, type Plant } from '../../assets/plant.js';
import type { Scenario } from '../../sim/scenario.js';

interface SimOptions {
  plant: string;
  host: string;
  port: string;
  apiPort?: string;
  opcuaPort?: string;
  seed: string;
  speed?: string;
  step?: boolean;
  scenario?: string;
  exitAfterScenario?: boolean;
  fault: string[];
  view?: boolean;
  maxConnections?: string;
  idleTimeout?: string;
}

function parsePort(text: string): number | undefined {
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

function usage(message: string): void {
  process.stderr.write(`plantgate sim: ${message}\n`);
  process.exitCode = 2;
}

function sourceErrors(err: unknown): boolean {
  if (!(err instanceof SourceErrors)) return false;
  for (const e of err.errors) process.stderr.write(`${e.message}\n`);
  process.exitCode = 2;
  return true;
}

export function register(program: Command): void {
  program
    .command('sim')
    .description('run simulated PLCs (a process model behind each plant point map) over Modbus/TCP')
    .requiredOption('--plant <file>', 'plant definition (YAML), e.g. fixtures/plants/water-treatment.yaml')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'Modbus/TCP port (0 = any free port)', '5020')
    .option('--opcua-port <port>', 'also serve the plant over OPC UA on this port (0 = any)')
    .option('--api-port <port>', 'serve the HTTP JSON API (points, faults, served requests) on this port (0 = any)')
    .option('--seed <n>', 'seed for measurement noise, fault probabilities and latency draws', '1')
    .option('--speed <x>', 'run plant time x times as fast as the wall clock (e.g. 10)')
    .option('--step', 'step mode: plant time moves only by POST /api/clock/step (needs --api-port)')
    .option('--scenario <file>', 'run a scenario timeline (YAML) from start, logging each step')
    .option('--exit-after-scenario', 'exit 0 once the scenario has run its last step')
    .option('--fault <json>', 'inject a fault at start, e.g. \'{"kind":"latency","ms":50}\' (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--view', 'show a compact live view of the points in the terminal')
    .option('--max-connections <n>', 'connections accepted at once, like a real PLC (4..16 are common); a further one is closed at once')
    .option('--idle-timeout <ms>', 'close a connection that sent no request for this many milliseconds, like a real PLC')
    .action(async (opts: SimOptions) => {
      const port = parsePort(opts.port);
      if (port === undefined) return usage(`--port must be an integer 0..65535, not "${opts.port}"`);
      const apiPort = opts.apiPort === undefined ? undefined : parsePort(opts.apiPort);
      if (opts.apiPort !== undefined && apiPort === undefined) return usage(`--api-port must be an integer 0..65535, not "${opts.apiPort}"`);
      if (!/^[0-9]{1,10}$/.test(opts.seed) || Number(opts.seed) > 0xffffffff) return usage(`--seed must be an integer 0..4294967295, not "${opts.seed}"`);
      const speed = opts.speed === undefined ? undefined : Number(opts.speed);
      if (speed !== undefined && !(Number.isFinite(speed) && speed > 0 && speed <= 10_000)) return usage(`--speed must be a number above 0 and at most 10000, not "${opts.speed}"`);
      if (opts.step === true && speed !== undefined) return usage('--step and --speed exclude each other');
      if (opts.step === true && apiPort === undefined) return usage('--step needs --api-port (time moves by POST /api/clock/step)');
      if (opts.exitAfterScenario === true && opts.scenario === undefined) return usage('--exit-after-scenario needs --scenario');
      const maxConnections = opts.maxConnections === undefined ? undefined : Number(opts.maxConnections);
      if (maxConnections !== undefined && !(/^[0-9]{1,5}$/.test(opts.maxConnections!) && maxConnections >= 1)) return usage(`--max-connections must be an integer of at least 1, not "${opts.maxConnections}"`);
      const idleTimeoutMs = opts.idleTimeout === undefined ? undefined : Number(opts.idleTimeout);
      if (idleTimeoutMs !== undefined && !(/^[0-9]{1,10}$/.test(opts.idleTimeout!) && idleTimeoutMs >= 1 && idleTimeoutMs <= 2_147_483_647)) return usage(`--idle-timeout must be milliseconds 1..2147483647, not "${opts.idleTimeout}"`);
      const faults: unknown[] = [];
      for (const [i, text] of opts.fault.entries()) {
        try {
          faults.push(JSON.parse(text));
        } catch (err) {
          return usage(`--fault #${i + 1} is not JSON: ${(err as Error).message}`);
        }
      }
      // The simulator is loaded when it runs, not with the CLI: `plantgate serve` would carry it.
      const [{ FaultSpecError }, { startSimApi }, { startSimulator }, { loadScenario, runScenario }, { ScaledClock }, { renderView }] = await Promise.all([
        import('../../sim/faults.js'), import('../../sim/http-api.js'), import('../../sim/modbus-server.js'),
        import('../../sim/scenario.js'), import('../../sim/sim-clock.js'), import('../../sim/view.js'),
      ]);
      let plant: Plant;
      let scenario: Scenario | undefined;
      try {
        plant = await loadPlant(opts.plant);
        if (opts.scenario !== undefined) scenario = await loadScenario(opts.scenario, plant);
      } catch (err) {
        if (sourceErrors(err)) return;
        throw err;
      }
      const logger = createLogger('plantgate-sim', opts.view === true ? { level: 'warn' } : {});
      const clock: Clock | undefined = opts.step === true ? new ManualClock(Date.now()) : speed !== undefined ? new ScaledClock(speed) : undefined;
      let sim: SimHandle;
      try {
        sim = await startSimulator({ plant, host: opts.host, port, logger, clock, seed: Number(opts.seed), maxConnections, idleTimeoutMs });
      } catch (err) {
        // SourceErrors here: the plant parses but its model lacks points it needs.
        if (sourceErrors(err)) return;
        process.stderr.write(`plantgate sim: cannot listen on ${opts.host}:${port}: ${(err as Error).message}\n`);
        process.exitCode = 1;
        return;
      }
      for (const [i, f] of faults.entries()) {
        try {
          sim.inject(f as never);
        } catch (err) {
          await sim.close();
          if (err instanceof FaultSpecError) return usage(`--fault #${i + 1}: ${err.message}`);
          throw err;
        }
      }
      let api: SimApiHandle | undefined;
      if (apiPort !== undefined) {
        try {
          api = await startSimApi(sim, { host: opts.host, port: apiPort });
        } catch (err) {
          await sim.close();
          process.stderr.write(`plantgate sim: cannot listen on ${opts.host}:${apiPort} (API): ${(err as Error).message}\n`);
          process.exitCode = 1;
          return;
        }
      }
      let opcua: OpcuaSimHandle | undefined;
      if (opts.opcuaPort !== undefined) {
        const opcuaPort = Number(opts.opcuaPort);
        if (!Number.isInteger(opcuaPort) || opcuaPort < 0 || opcuaPort > 65535) {
          await api?.close();
          await sim.close();
          return usage('--opcua-port must be an integer 0..65535');
        }
        try {
          // Loaded only when asked for: node-opcua is heavy.
          const { startOpcuaSimulator } = await import('../../sim/opcua-server.js');
          opcua = await startOpcuaSimulator({ runtime: sim.runtime, host: opts.host, port: opcuaPort });
        } catch (err) {
          await api?.close();
          await sim.close();
          process.stderr.write(`plantgate sim: cannot serve OPC UA on ${opts.host}:${opcuaPort}: ${(err as Error).message}\n`);
          process.exitCode = 1;
          return;
        }
      }
      logger.info(
        {
          plant: plant.name,
          endpoint: `modbus+tcp://${sim.host}:${sim.port}`,
          opcua: opcua?.endpointUrl ?? null,
          api: api?.url ?? null,
          seed: Number(opts.seed),
          clock: opts.step === true ? 'step' : speed !== undefined ? `x${speed}` : 'real',
          plcs: plant.plcs.map((p) => ({ id: p.id, unitId: p.unitId, points: p.points.length, model: p.model ?? null, blocks: p.process?.length ?? 0 })),
        },
        'simulator serving Modbus/TCP',
      );
      const recent: string[] = [];
      const run = scenario === undefined ? undefined : runScenario(sim, scenario, logger, (r) => {
        recent.push(`  +${r.atMs / 1000}s ${r.note ?? ''} ${r.actions.join('; ')}${r.error !== undefined ? ` ERROR ${r.error}` : ''}`);
        if (recent.length > 5) recent.shift();
      });
      let viewTimer: NodeJS.Timeout | undefined;
      if (opts.view === true) {
        const draw = (): void => {
          const cols = process.stdout.columns ?? 100;
          const text = renderView(sim, cols) + (recent.length > 0 ? `\nscenario ${scenario?.scenario}:\n${recent.join('\n')}` : '');
          process.stdout.write(`\x1b[H\x1b[2J${text}\n`);
        };
        draw();
        viewTimer = setInterval(draw, 500);
      }
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          logger.info({ signal }, 'stopping');
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        if (opts.exitAfterScenario === true && run !== undefined) {
          void run.done.then(() => {
            logger.info({ scenario: scenario?.scenario, steps: run.records.length }, 'scenario finished');
            resolve();
          });
        }
      });
      if (viewTimer !== undefined) clearInterval(viewTimer);
      run?.stop();
      await opcua?.close();
      await api?.close();
      await sim.close();
    });
}
