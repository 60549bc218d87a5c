// A scripted agent for the demo and for end-to-end tests: modbus-serial (an independent Modbus
// client) speaking through a mutual-TLS socket, and the agent API for putting tokens.
import https from 'node:https';
import tls from 'node:tls';
import ModbusSerial from 'modbus-serial';

// modbus-serial is CommonJS: under NodeNext its class is the namespace's `default` (it sets
// module.exports.default = module.exports, so this is the class at runtime too).
const ModbusRTU = ModbusSerial.default;
type ModbusRTU = InstanceType<typeof ModbusRTU>;

export interface AgentCredentials {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface ModbusAgent {
  client: ModbusRTU;
  close(): Promise<void>;
}

/** Opens a Modbus/TCP Security connection (TLS, client certificate) and hands it to modbus-serial. */
export async function connectModbusAgent(host: string, port: number, creds: AgentCredentials, unitId = 1, timeoutMs = 3000): Promise<ModbusAgent> {
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host, port, ca: creds.ca, cert: creds.cert, key: creds.key, servername: 'localhost' }, () => resolve(s));
    s.once('error', reject);
  });
  const client = new ModbusRTU();
  await client.connectTCP(host, { port, socket } as unknown as Parameters<ModbusRTU['connectTCP']>[1]);
  client.setID(unitId);
  client.setTimeout(timeoutMs);
  return {
    client,
    close: () =>
      new Promise<void>((resolve) => {
        if (socket.destroyed) return resolve();
        socket.once('close', () => resolve());
        socket.destroy();
      }),
  };
}

export interface PutTokenAnswer {
  status: number;
  body: { status?: string; reason?: string; detail?: string; message?: string; expires_at?: string };
}

/** PUT /v1/token on the agent API with the agent's own certificate. */
export function putToken(host: string, port: number, creds: AgentCredentials, token: string): Promise<PutTokenAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host,
        port,
        method: 'PUT',
        path: '/v1/token',
        ca: creds.ca,
        cert: creds.cert,
        key: creds.key,
        servername: 'localhost',
        headers: { 'content-type': 'application/jwt', 'content-length': Buffer.byteLength(token) },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: PutTokenAnswer['body'] = {};
          try {
            body = JSON.parse(text) as PutTokenAnswer['body'];
          } catch {
            body = { message: text };
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('error', reject);
    req.end(token);
  });
}

/** The Modbus exception code of a modbus-serial error, or undefined for other failures. */
export function exceptionCodeOf(err: unknown): number | undefined {
  const code = (err as { modbusCode?: unknown }).modbusCode;
  return typeof code === 'number' ? code : undefined;
}
