// `plantgate pki init`: a development CA with gateway, collector and agent certificates.
// `plantgate pki opcua`: OPC UA application instance certificates (RSA) for the gateway, its agents
// and the servers it fronts. Never for plant use; keys are written next to what they sign.
import type { Command } from 'commander';
import { initPki, PkiError, type PkiAgent } from '../../identity/dev/pki.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function parseAgent(spec: string): PkiAgent | string {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) return `--agent "${spec}": expected NAME=SPIFFE_ID`;
  return { name: spec.slice(0, eq), spiffeId: spec.slice(eq + 1) };
}

function parseServer(spec: string): { name: string; applicationUri: string } | string {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) return `--server "${spec}": expected NAME=APPLICATION_URI`;
  return { name: spec.slice(0, eq), applicationUri: spec.slice(eq + 1) };
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

  pki
    .command('opcua')
    .description('issue OPC UA application instance certificates (RSA 2048, URI SAN = applicationUri, key usages for Basic256Sha256 / Aes256_Sha256_RsaPss) for the gateway, its agents and fronted servers')
    .requiredOption('--dir <dir>', 'directory to write gateway.pem/.key, agents/<name>.pem/.key, servers/<name>.pem/.key')
    .option('--gateway-uri <uri>', "the gateway's applicationUri (its opcua.application_uri)", 'urn:plantgate:gateway')
    .option('--agent <name=spiffeId>', "an agent's certificate; its applicationUri is its SPIFFE ID (repeatable); default: optimizer and reporter", collect, [])
    .option('--server <name=applicationUri>', 'a certificate for an OPC UA server the gateway fronts (a test PLC; repeatable)', collect, [])
    .option('--trust-domain <td>', 'SPIFFE trust domain of the default agents', 'plant.example')
    .option('--host <host>', 'DNS name or IP of the gateway (and servers) for the URI/DNS SANs (repeatable); default localhost and 127.0.0.1', collect, [])
    .option('--validity-days <days>', 'certificate validity in days', '365')
    .option('--force', 'replace certificates already in --dir')
    .action(async (opts: { dir: string; gatewayUri: string; agent: string[]; server: string[]; trustDomain: string; host: string[]; validityDays: string; force?: boolean }) => {
      const usage = (message: string): void => {
        process.stderr.write(`plantgate pki opcua: ${message}\n`);
        process.exitCode = 2;
      };
      const specs = opts.agent.length > 0 ? opts.agent : [`optimizer=spiffe://${opts.trustDomain}/agent/optimizer`, `reporter=spiffe://${opts.trustDomain}/agent/reporter`];
      const agents: PkiAgent[] = [];
      for (const spec of specs) {
        const a = parseAgent(spec);
        if (typeof a === 'string') return usage(a);
        agents.push(a);
      }
      const servers: { name: string; applicationUri: string }[] = [];
      for (const spec of opts.server) {
        const v = parseServer(spec);
        if (typeof v === 'string') return usage(v);
        servers.push(v);
      }
      const validityDays = Number(opts.validityDays);
      if (!Number.isInteger(validityDays) || validityDays < 1) return usage(`--validity-days '${opts.validityDays}' is not a positive whole number`);
      // Loaded here: the Modbus-only commands do not pay for @peculiar/x509's RSA path.
      const { AppCertError, issueOpcuaCerts } = await import('../../../protocols/opcua/app-cert.js');
      try {
        const out = await issueOpcuaCerts(opts.dir, {
          gatewayUri: opts.gatewayUri,
          hosts: opts.host.length > 0 ? opts.host : ['localhost', '127.0.0.1'],
          agents,
          servers,
          validityDays,
          overwrite: opts.force === true,
        });
        const line = (kind: string, c: { cert: string; applicationUri: string; thumbprint: string }) => `${kind.padEnd(10)} ${c.cert}  ${c.applicationUri}  x5t#S256=${c.thumbprint}`;
        const lines = [
          line('gateway', out.gateway),
          ...Object.values(out.agents).map((c) => line('agent', c)),
          ...Object.values(out.servers).map((c) => line('server', c)),
          '',
          '# gateway config (docs/configuration.md, "OPC UA"):',
          'opcua:',
          `  application_uri: ${out.gateway.applicationUri}`,
          `  cert: ${out.gateway.cert}`,
          `  key: ${out.gateway.key}`,
          `  trusted_agent_certs: [${Object.values(out.agents).map((c) => c.cert).join(', ')}]`,
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        process.stderr.write(`plantgate pki opcua: ${(err as Error).message}\n`);
        process.exitCode = err instanceof AppCertError ? 2 : 1;
      }
    });
}
