// `plantgate demo`: the whole system on loopback with a scripted agent; exits 0 when every
// command got the answer it should. `--keep-running` leaves it up for your own Modbus client.
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { parseVerifierKey } from '../../audit/note.js';
import { verifySpool } from '../../audit/offline.js';
import { createLogger } from '../../core/log.js';
import type { StepResult } from '../demo/script.js';

/** The scopes the demo bundle's OPC UA rules ask (each rule requires its operation's name). */
const OPCUA_SCOPES = ['read', 'write', 'call', 'browse', 'subscribe'];

export function register(program: Command): void {
  program
    .command('demo')
    .description('run the simulator, the gateway and a SOC collector on loopback with a scripted agent, and print what happened to each command')
    .option('--keep-running', 'leave everything running after the script (Ctrl-C to stop)')
    .option('--no-opcua', 'leave out the OPC UA part (the plant over OPC UA behind the gateway\'s OPC UA front, with an OPC UA agent)')
    .option('--state-dir <dir>', 'where to put certificates, keys, the bundle, the spool and the SOC stream (default: a new temp dir)')
    .action(async (opts: { keepRunning?: boolean; stateDir?: string; opcua?: boolean }) => {
      const stateDir = path.resolve(opts.stateDir ?? (await mkdtemp(path.join(os.tmpdir(), 'plantgate-demo-'))));
      // The table below is the demo's output; logs (pino-pretty, stderr) only for errors unless asked.
      const logger = createLogger('plantgate-demo', {
        level: process.env.PLANTGATE_LOG_LEVEL ?? 'error',
        transport: { target: 'pino-pretty', options: { destination: 2, colorize: false } },
      });
      const out = (s: string) => process.stdout.write(`${s}\n`);
      out(`plantgate demo — state in ${stateDir}`);
      // The lab (simulator, agents, their Modbus client) loaded only for the demo: every other
      // command, `serve` above all, would carry its code (~10 MB of memory) for nothing.
      const { DEMO_AGENTS, startLab } = await import('../demo/lab.js');
      const { runScript } = await import('../demo/script.js');
      const lab = await startLab({ stateDir, logger, opcua: opts.opcua !== false });
      out(`  simulator  modbus://127.0.0.1:${lab.sim.port} (water-treatment plant, unit 1)`);
      out(`  gateway    modbus+tls://127.0.0.1:${lab.gateway.modbus.port}   agent API https://127.0.0.1:${lab.gateway.agentApi.port}/v1/token`);
      if (lab.opcua) out(`  opc ua     ${lab.opcua.endpointUrl} (gateway front)   PLC face ${lab.opcua.simEndpointUrl}`);
      if (lab.gateway.mcp) out(`  mcp        ${lab.gateway.mcp.resource} (Streamable HTTP, bearer tokens with aud = this URL)`);
      out(`  collector  tls://127.0.0.1:${lab.collector.port} → ${lab.collectorDir}`);
      out('');
      const print = (r: StepResult) =>
        out(
          `${r.ok ? '✔' : '✘'} ${r.agent.padEnd(9)} ${r.command.padEnd(30)} → ${r.decision.padEnd(5)} ${r.reason.padEnd(20)} ${r.answer.padEnd(16)} ${r.step}` +
            (r.ok ? '' : `   (expected ${r.expected})`),
        );
      let results: StepResult[] = [];
      try {
        results = await runScript(lab, print);
        if (lab.opcua) {
          const { runOpcuaScript } = await import('../demo/opcua-script.js');
          results.push(...(await runOpcuaScript(lab, print)));
        }
        // An LLM agent through the MCP front: what it is told when refused is printed under the step.
        const { runMcpScript } = await import('../demo/mcp-script.js');
        results.push(...(await runMcpScript(lab, print, (text) => out(`      ↳ ${text}`))));
        const shipped = await lab.waitShipped();
        out('');
        out(`SOC stream: ${shipped.records} records, chain verified by the collector, in ${shipped.file} (OCSF for a SIEM: ${shipped.file.replace(/\.ndjson$/, '.ocsf.ndjson')})`);
        if (opts.keepRunning) {
          const files = {
            gateway: { modbus_tls: lab.gateway.modbus, agent_api: lab.gateway.agentApi },
            simulator: { host: '127.0.0.1', port: lab.sim.port },
            collector: { host: '127.0.0.1', port: lab.collector.port, out_dir: lab.collectorDir },
            ca: lab.pki.ca.cert,
            agents: lab.pki.agents,
            token: { optimizer: await lab.token('optimizer', { ttlSec: 900 }) },
            ...(lab.gateway.mcp ? { mcp: { url: lab.gateway.mcp.resource, token: { optimizer: await lab.mcpToken('optimizer', { ttlSec: 900 }) } } } : {}),
            // An OPC UA agent: its application certificate (applicationUri = its SPIFFE ID) and a token
            // bound to that certificate with every scope the OPC UA rules ask (docs/opcua.md, "Token scopes").
            ...(lab.opcua
              ? {
                  opcua: {
                    endpoint: lab.opcua.endpointUrl,
                    security: 'SignAndEncrypt or Sign, Basic256Sha256 or Aes256_Sha256_RsaPss; the token as an IssuedIdentityToken (JWT) or as the UserName password',
                    namespace: lab.opcua.namespace,
                    server_cert: lab.opcua.gatewayCert,
                    agent: { name: 'optimizer', application_uri: DEMO_AGENTS.optimizer, ...lab.opcua.agentFiles.optimizer },
                    token: { optimizer: await lab.opcua.token('optimizer', { ttlSec: 900, scope: OPCUA_SCOPES }) },
                  },
                }
              : {}),
            config: lab.configFile,
            bundle: lab.bundleFile,
          };
          // The console's sign-in token: operator tokens are short-lived, so the file is renewed while the demo runs.
          const operatorTokenFile = path.join(stateDir, 'operator.jwt');
          const renew = async () => writeFile(operatorTokenFile, `${await lab.operatorToken()}\n`, { mode: 0o600 });
          await renew();
          const renewal = setInterval(() => void renew().catch(() => undefined), 300_000);
          const o = lab.gateway.operatorApi;
          const consoleUrl = o === undefined ? undefined : `https://${o.host}:${o.port}/console/`;
          const demoJson = path.join(stateDir, 'demo.json');
          await writeFile(demoJson, JSON.stringify({ ...files, console: consoleUrl, operator_token_file: operatorTokenFile }, null, 2) + '\n');
          if (consoleUrl !== undefined) {
            out(`Operator console: ${consoleUrl}`);
            out(`  sign in with the operator token in ${operatorTokenFile} (renewed every 5 min); the certificate is signed by ${lab.pki.ca.cert}`);
          }
          out(`Running. Endpoints and credentials: ${demoJson}. Ctrl-C to stop.`);
          await new Promise<void>((resolve) => {
            process.once('SIGINT', () => resolve());
            process.once('SIGTERM', () => resolve());
          });
          clearInterval(renewal);
        }
      } finally {
        await lab.close();
      }
      // The gateway signed a last checkpoint on close: check the whole spool as a SOC would.
      const report = await verifySpool(lab.spoolDir, parseVerifierKey(lab.auditVerifierKey));
      out(
        report.ok
          ? `Audit log verified: tree of ${report.treeSize} records, ${report.checkpoints} signed checkpoints, chain unbroken.`
          : `Audit log verification FAILED: ${report.problems.map((p) => `${p.where}: ${p.message}`).join('; ')}`,
      );
      out(`  check it yourself: plantgate audit verify ${lab.spoolDir} --key '${lab.auditVerifierKey}'`);
      const failed = results.filter((r) => !r.ok);
      out(failed.length === 0 ? `All ${results.length} commands answered as expected.` : `${failed.length} of ${results.length} commands did not answer as expected.`);
      process.exitCode = failed.length === 0 && report.ok ? 0 : 1;
    });
}
