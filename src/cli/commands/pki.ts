// `plantgate pki init`: a development CA with gateway, collector and agent certificates.
// Never for plant use; the CA key is written next to what it signs.
import type { Command } from 'commander';
import { initPki, PkiError, type PkiAgent } from '../../identity/dev/pki.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function parseAgent(spec: string): PkiAgent | string {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) return `--agent "${spec}": expected NAME=SPIFFE_ID`;
  return { name: spec.slice(0, eq), spiffeId: spec.slice(eq + 1) };
}

export function register(program: Command): void {
  const pki = program.command('pki').description('development PKI (CA, gateway, collector and agent certificates)');
  pki
    .command('init')
    .description('create a dev CA and issue gateway, collector and agent certificates (keys mode 0600)')
    .requiredOption('--dir <dir>', 'directory to write ca.crt/.key, gateway.*, collector.*, agents/<name>.*')
    .option('--agent <name=spiffeId>', 'an agent client certificate (repeatable); default: optimizer and reporter', collect, [])
    .option('--trust-domain <td>', 'SPIFFE trust domain', 'plant.example')
    .option('--host <host>', 'DNS name or IP for the server certificates (repeatable); default localhost and 127.0.0.1', collect, [])
    .option('--validity-days <days>', 'certificate validity in days', '365')
    .option('--force', 'replace an existing CA in --dir')
    .action(async (opts: { dir: string; agent: string[]; trustDomain: string; host: string[]; validityDays: string; force?: boolean }) => {
      const td = opts.trustDomain;
      const specs = opts.agent.length > 0 ? opts.agent : [`optimizer=spiffe://${td}/agent/optimizer`, `reporter=spiffe://${td}/agent/reporter`];
      const agents: PkiAgent[] = [];
      for (const spec of specs) {
        const a = parseAgent(spec);
        if (typeof a === 'string') {
          process.stderr.write(`plantgate pki init: ${a}\n`);
          process.exitCode = 2;
          return;
        }
        agents.push(a);
      }
      const validityDays = Number(opts.validityDays);
      try {
        const paths = await initPki(opts.dir, {
          agents,
          trustDomain: td,
          validityDays,
          overwrite: opts.force === true,
          ...(opts.host.length > 0 ? { gatewayHosts: opts.host } : {}),
        });
        const lines = [
          `ca         ${paths.ca.cert}`,
          `gateway    ${paths.gateway.cert}  ${paths.gateway.spiffeId}`,
          `collector  ${paths.collector.cert}  ${paths.collector.spiffeId}`,
          ...Object.entries(paths.agents).map(([name, p]) => `agent      ${p.cert}  ${p.spiffeId}  (${name})`),
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        process.stderr.write(`plantgate pki init: ${(err as Error).message}\n`);
        process.exitCode = err instanceof PkiError ? 2 : 1;
      }
    });
}
