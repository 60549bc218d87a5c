// `plantgate pki init`: a development CA with gateway, collector and agent certificates.
// `plantgate pki issue`: one more agent certificate under that CA (the CA and other certificates stay).
// `plantgate pki opcua`: OPC UA application instance certificates (RSA) for the gateway, its agents
// and the servers it fronts. Never for plant use; keys are written next to what they sign.
import type { Command } from 'commander';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { certificateThumbprint } from '../../identity/cert.js';
import { initPki, issueClientCertificate, PkiError, type PkiAgent, type PkiPaths } from '../../identity/dev/pki.js';
import { parseSpiffeId } from '../../identity/spiffe.js';

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
    .command('issue')
    .description('issue one more agent client certificate under the existing dev CA in --dir (the CA and the other certificates stay)')
    .requiredOption('--dir <dir>', 'the directory of plantgate pki init (ca.crt, ca.key); writes agents/<name>.crt/.key')
    .requiredOption('--agent <name=spiffeId>', 'the agent: file name and SPIFFE ID (repeatable)', collect, [])
    .option('--role <role>', 'Modbus/TCP Security role to put in the certificates (docs/identity.md)')
    .option('--validity-days <days>', 'certificate validity in days', '365')
    .option('--force', 'replace an agent certificate of the same name')
    .addHelpText('after', '\nExample: plantgate pki issue --dir demo/pki --agent maint1=spiffe://plant.example/maintenance/laptop1\n')
    .action(async (opts: { dir: string; agent: string[]; role?: string; validityDays: string; force?: boolean }) => {
      const usage = (message: string): void => {
        process.stderr.write(`plantgate pki issue: ${message}\n`);
        process.exitCode = 2;
      };
      const validityDays = Number(opts.validityDays);
      if (!Number.isInteger(validityDays) || validityDays < 1) return usage(`--validity-days '${opts.validityDays}' is not a positive whole number`);
      const agents: PkiAgent[] = [];
      for (const spec of opts.agent) {
        const a = parseAgent(spec);
        if (typeof a === 'string') return usage(a);
        const bad = parseSpiffeId(a.spiffeId);
        if (typeof bad === 'string') return usage(`--agent ${spec}: not a SPIFFE ID: ${bad}`);
        agents.push(a);
      }
      const exists = (f: string): Promise<boolean> => access(f).then(() => true, () => false);
      const ca = { cert: join(opts.dir, 'ca.crt'), key: join(opts.dir, 'ca.key') };
      if (!(await exists(ca.key)) || !(await exists(ca.cert))) return usage(`${opts.dir} holds no CA (ca.crt and ca.key): create one with plantgate pki init --dir ${opts.dir}`);
      for (const a of agents) {
        if (opts.force !== true && (await exists(join(opts.dir, 'agents', `${a.name}.crt`)))) return usage(`${join(opts.dir, 'agents', `${a.name}.crt`)} already exists (--force replaces it)`);
      }
      // issueClientCertificate reads only the directory and the CA of these paths.
      const pkiPaths = { dir: opts.dir, ca } as PkiPaths;
      const now = Date.now();
      try {
        for (const a of agents) {
          const out = await issueClientCertificate(pkiPaths, {
            name: a.name,
            uris: [a.spiffeId],
            notBefore: new Date(now - 5 * 60_000), // as pki init: a few minutes of clock skew
            notAfter: new Date(now + validityDays * 86_400_000),
            ...(opts.role !== undefined ? { role: opts.role } : {}),
          });
          const x5t = certificateThumbprint(new X509Certificate(await readFile(out.cert)));
          process.stdout.write(`agent      ${out.cert}  ${a.spiffeId}  (${a.name})  x5t#S256=${x5t}\n`);
        }
      } catch (err) {
        process.stderr.write(`plantgate pki issue: ${(err as Error).message}\n`);
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
