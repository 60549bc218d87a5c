// A real nats-server (Debian's; make test installs it) on loopback with JetStream and a file store,
// for the tests of the JetStream sink and of collectors reading from it. Stopped with SIGKILL (an
// outage), started again on the same port and store.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export { freePort } from '../../bench/processes.js';

export interface NatsServer {
  readonly port: number;
  readonly url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function natsServer(root: string, port: number): NatsServer {
  let server: ChildProcess | undefined;
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    async start() {
      const child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', join(root, 'nats')], { stdio: ['ignore', 'ignore', 'pipe'] });
      let log = '';
      child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
      await new Promise<void>((resolve, reject) => {
        child.once('error', (err) => reject(new Error(`cannot run nats-server (make test installs it: apt-get install nats-server): ${err.message}`)));
        child.once('exit', (code) => reject(new Error(`nats-server exited ${code}: ${log}`)));
        // nats-server logs to stderr; JetStream is usable once it says the server is ready.
        child.stderr!.on('data', () => log.includes('Server is ready') && resolve());
      });
      server = child;
    },
    async stop() {
      const s = server;
      server = undefined;
      if (!s || s.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        s.once('exit', () => resolve());
        s.kill('SIGKILL');
      });
    },
  };
}
