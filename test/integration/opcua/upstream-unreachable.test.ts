// The upstream session when the PLC is not there or does not answer: the gateway's commands must
// get an answer at once (BadServerNotConnected), never wait on a socket. No OPC UA server runs
// here: one endpoint refuses connections, the other accepts TCP and stays silent (a hung PLC).
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DataType, OPCUACertificateManager, StatusCodes, Variant } from 'node-opcua';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAppCert, writeAppCert } from '../../../protocols/opcua/app-cert.js';
import { OpcuaUpstream } from '../../../protocols/opcua/upstream.js';

const TARGET = 'nsu=urn:plantgate:sim:water-treatment:plc1;s=tank1.setpoint';

describe('OPC UA upstream: unreachable or silent PLC', () => {
  let dir: string;
  let files: { cert: string; key: string };
  let silent: net.Server;
  const sockets: net.Socket[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-opcua-up-'));
    files = await writeAppCert(dir, 'gateway', await createAppCert({ applicationUri: 'urn:plantgate:gateway', commonName: 'gateway' }));
    silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => silent.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  const upstream = (endpointUrl: string) =>
    new OpcuaUpstream({
      endpointUrl, certificateFile: files.cert, privateKeyFile: files.key, applicationUri: 'urn:plantgate:gateway',
      clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, 'pki'), automaticallyAcceptUnknownCertificate: false }),
      targets: [TARGET], onValue: () => undefined, timeoutMs: 300, initialDelayMs: 100, maxDelayMs: 200,
    });

  for (const [what, url] of [
    ['refuses connections', () => 'opc.tcp://127.0.0.1:1'],
    ['accepts TCP but never answers', () => `opc.tcp://127.0.0.1:${(silent.address() as net.AddressInfo).port}`],
  ] as const) {
    it(`answers writes and calls BadServerNotConnected at once when the PLC ${what}`, async () => {
      const up = upstream(url());
      try {
        await up.start();
        expect(up.isUp).toBe(false);
        // BadServerNotConnected, not BadTimeout: answered from the session state, never after waiting on a socket.
        expect(await up.write(TARGET, new Variant({ dataType: DataType.Double, value: 5 }))).toBe(StatusCodes.BadServerNotConnected);
        expect((await up.call(TARGET, TARGET, [])).statusCode).toBe(StatusCodes.BadServerNotConnected);
      } finally {
        await up.close();
      }
    });
  }
});
