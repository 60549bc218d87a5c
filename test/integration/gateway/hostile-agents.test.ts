// Agents that break the protocol or cannot prove who they are, against the whole gateway over real
// TLS: every malformed frame of fixtures/frames is audited and either closes that one connection
// (broken framing) or is answered with the exception a PLC gives on the same connection (a PDU the
// spec refuses); a slowloris agent holds
// nothing up; a certificate without a SPIFFE ID or from another CA gets no session at all. Through
// all of it a well-behaved agent on its own connection keeps reading the plant.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { webcrypto } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectModbusAgent, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { ManualClock } from '../../../src/core/clock.js';
import { initPki } from '../../../src/identity/dev/pki.js';
import { ModbusTlsListener } from '../../../protocols/modbus/listener.js';
import { UpstreamPool } from '../../../protocols/modbus/upstream.js';
import type { DecodedRecord } from '../../../src/audit/schema.js';
import { auditRecords, authenticate, loadCorpus, rawAgent, within } from './harness.js';

x509.cryptoProvider.set(webcrypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

/** A client certificate signed by the lab CA whose SAN names a host, not a SPIFFE workload. */
async function certificateWithoutSpiffeId(lab: Lab): Promise<{ cert: string; key: string }> {
  const [caPem, caKeyPem] = await Promise.all([readFile(lab.pki.ca.cert, 'utf8'), readFile(lab.pki.ca.key, 'utf8')]);
  const caCert = new x509.X509Certificate(caPem);
  const caKey = await webcrypto.subtle.importKey('pkcs8', pemBody(caKeyPem), ALG, false, ['sign']);
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '0badc0de',
    subject: 'CN=optimizer, O=plantgate dev',
    issuer: caCert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'optimizer.plant.example' }], false),
    ],
  });
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').trimEnd()}\n-----END PRIVATE KEY-----\n`;
  return { cert: cert.toString('pem'), key };
}

/** Connects with the given credentials and reports how the connection ended. */
function tryConnect(port: number, creds: tls.ConnectionOptions): Promise<{ secure: boolean; answered: boolean; error?: string }> {
  return within(
    new Promise((resolve) => {
      let secure = false;
      let answered = false;
      let error: string | undefined;
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...creds }, () => {
        secure = true;
        // A read the gateway must never answer: this peer has no session.
        socket.write(Buffer.from([0, 1, 0, 0, 0, 6, 1, 4, 0, 0, 0, 1]));
      });
      socket.on('data', () => (answered = true));
      socket.on('error', (err) => (error = err.message));
      socket.on('close', () => resolve({ secure, answered, error }));
    }),
    5000,
    'the gateway to close the connection',
  );
}

function violations(records: DecodedRecord[]): string[] {
  return records.flatMap((r) => (r.violation ? [r.violation.detail ?? ''] : []));
}

describe('hostile agents against the gateway', () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let steady: ModbusAgent;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-hostile-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock, clock: new ManualClock(Date.now()) });
    await authenticate(lab, 'optimizer', clock.now());
    await authenticate(lab, 'reporter', clock.now());
    steady = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('reporter'));
  });

  afterAll(async () => {
    await steady?.close();
    await lab?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The well-behaved agent still reads the tank level through the gateway. */
  async function steadyStillReads(): Promise<void> {
    lab.sim.write('tank1.level', 42.5);
    const r = await steady.client.readInputRegisters(0, 1);
    expect(r.data).toEqual([425]);
  }

  const corpus = loadCorpus();

  it.each(corpus.map((c) => [c.file, c] as const))('%s: refused, audited, and nobody else notices', async (_file, c) => {
    const from = lab.gateway.audit.nextSeq;
    const agent = await rawAgent(lab.gateway.modbus.port, await lab.credentials('optimizer'));
    agent.socket.write(c.bytes);
    // A read on the same connection after the bad frame: answered only if the connection survived.
    const probeTid = 0x7e57;
    const probe = Buffer.from([probeTid >> 8, probeTid & 0xff, 0, 0, 0, 6, 1, 4, 0, 0, 0, 1]);
    const pduError = c.expect === 'UNSUPPORTED_FUNCTION' || c.expect === 'BAD_PDU';
    if (pduError && c.bytes[7] !== 0 && c.bytes[7] < 0x80) {
      // A well-framed request the spec refuses: a deny, answered under the agent's transaction id
      // with the exception a PLC gives (0x01 unknown function, 0x03 bad quantity / byte count /
      // value, 0x02 a range past 65535), and the connection stays usable.
      agent.socket.write(probe);
      const [answer, next] = await within(agent.receive(2), 5000, 'two answers');
      expect(answer.transactionId).toBe(c.bytes.readUInt16BE(0));
      const exception = c.expect === 'UNSUPPORTED_FUNCTION' ? 0x01 : c.file === 'fc3-address-overflow.hex' ? 0x02 : 0x03;
      expect([...answer.pdu]).toEqual([c.bytes[7] | 0x80, exception]);
      expect(next.transactionId).toBe(probeTid);
      expect(next.pdu[0]).toBe(0x04);
      agent.socket.destroy();
      const records = await auditRecords(lab.gateway.audit, from);
      const reasons = records.flatMap((r) => (r.decision?.decision ? [r.decision.decision.reason] : []));
      expect(reasons[0]).toBe(c.expect === 'UNSUPPORTED_FUNCTION' ? 'UNSUPPORTED_FUNCTION' : 'PROTOCOL_VIOLATION');
      expect(violations(records)).toEqual([]);
    } else {
      // Broken framing, or a function code that cannot even carry an exception answer (0, or one
      // with the exception bit set): the stream is closed.
      agent.socket.write(probe);
      await within(agent.closed, 5000, 'the gateway to close the connection');
      const records = await auditRecords(lab.gateway.audit, from);
      const found = violations(records);
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(/^PROTOCOL_VIOLATION /);
      if (c.expect !== 'UNSUPPORTED_FUNCTION') expect(found[0]).toContain(c.expect);
      // The probe after the bad frame was never executed.
      expect(records.filter((r) => r.decision?.command?.transactionId === probeTid)).toEqual([]);
    }
    await steadyStillReads();
  });

  it('a slowloris agent that sends half a frame and stops does not hold up other agents', async () => {
    const slow = await rawAgent(lab.gateway.modbus.port, await lab.credentials('optimizer'));
    slow.socket.write(Buffer.from([0x00, 0x09, 0x00, 0x00, 0x00, 0x06, 0x01])); // header, no PDU
    const others = await Promise.all(
      Array.from({ length: 3 }, async () => connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('reporter'))),
    );
    try {
      lab.sim.write('tank1.level', 55.5);
      const answers = await Promise.all(others.flatMap((o) => [o.client.readInputRegisters(0, 1), o.client.readInputRegisters(0, 1)]));
      expect(answers.map((a) => a.data[0])).toEqual(Array(6).fill(555));
      await steadyStillReads();
      expect(slow.socket.destroyed).toBe(false);
      // Finishing the frame later gets it answered: the half frame was held, not lost or misread.
      slow.socket.write(Buffer.from([0x04, 0x00, 0x00, 0x00, 0x01]));
      const [answer] = await within(slow.receive(1), 5000, 'the completed frame to be answered');
      expect(answer.transactionId).toBe(9);
      expect(answer.pdu[0]).toBe(0x04);
    } finally {
      slow.socket.destroy();
      await Promise.all(others.map((o) => o.close()));
    }
  });

  it('closes a connection whose frame stays incomplete past the frame deadline; idle agents are left alone', async () => {
    // A listener with a short frame deadline, on the lab gateway's own pipeline and the simulator.
    const [ca, cert, key] = await Promise.all([readFile(lab.pki.ca.cert), readFile(lab.pki.gateway.cert), readFile(lab.pki.gateway.key)]);
    const pool = new UpstreamPool({ host: lab.sim.host, port: lab.sim.port, connections: 1 });
    const listener = new ModbusTlsListener({
      host: '127.0.0.1',
      port: 0,
      tls: { ca, cert, key },
      pipeline: lab.gateway.pipeline,
      route: () => ({ pool, unitId: 1 }),
      frameTimeoutMs: 100,
    });
    const { port } = await listener.listen();
    try {
      await pool.ready();
      const idle = await rawAgent(port, await lab.credentials('reporter'));
      const from = lab.gateway.audit.nextSeq;
      const slow = await rawAgent(port, await lab.credentials('optimizer'));
      slow.socket.write(Buffer.from([0x00, 0x09, 0x00, 0x00, 0x00, 0x06, 0x01, 0x04])); // 8 of 12 bytes
      await within(slow.closed, 5000, 'the stalled connection to be closed');
      const found = violations(await auditRecords(lab.gateway.audit, from));
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(/^PROTOCOL_VIOLATION FRAME_TIMEOUT/);
      // The idle agent sat through more than one deadline without a frame in progress: still served.
      lab.sim.write('tank1.level', 61.2);
      idle.send(3, 1, [0x04, 0x00, 0x00, 0x00, 0x01]);
      const [answer] = await within(idle.receive(1), 5000, 'the idle agent’s answer');
      expect(answer.pdu.readUInt16BE(2)).toBe(612);
      idle.socket.destroy();
    } finally {
      await listener.close();
      pool.close();
    }
  });

  it('closes the connection of a certificate without a SPIFFE URI SAN and audits NO_IDENTITY', async () => {
    const from = lab.gateway.audit.nextSeq;
    const { cert, key } = await certificateWithoutSpiffeId(lab);
    const ca = await readFile(lab.pki.ca.cert);
    const result = await tryConnect(lab.gateway.modbus.port, { ca, cert, key });
    expect(result.answered).toBe(false);
    const records = await auditRecords(lab.gateway.audit, from);
    const found = violations(records);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^NO_IDENTITY /);
    expect(found[0]).toContain('URI SAN');
    // Earlier tests' connections may still be closing: only an opened session would be wrong.
    expect(records.some((r) => r.session?.kind === 'open')).toBe(false);
    expect(records.some((r) => r.decision)).toBe(false);
    await steadyStillReads();
  });

  it('refuses the handshake of a certificate from another CA and audits NO_IDENTITY', async () => {
    const otherDir = path.join(dir, 'other-pki');
    const other = await initPki(otherDir, { agents: [{ name: 'optimizer', spiffeId: 'spiffe://plant.example/agent/optimizer' }] });
    const from = lab.gateway.audit.nextSeq;
    const [ca, cert, key] = await Promise.all([readFile(lab.pki.ca.cert), readFile(other.agents.optimizer.cert), readFile(other.agents.optimizer.key)]);
    const result = await tryConnect(lab.gateway.modbus.port, { ca, cert, key });
    expect(result.answered).toBe(false);
    const records = await auditRecords(lab.gateway.audit, from);
    const found = violations(records);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^NO_IDENTITY TLS_HANDSHAKE/);
    expect(records.some((r) => r.session?.kind === 'open')).toBe(false);
    await steadyStillReads();
  });

  it('refuses a client that presents no certificate at all', async () => {
    const from = lab.gateway.audit.nextSeq;
    const ca = await readFile(lab.pki.ca.cert);
    const result = await tryConnect(lab.gateway.modbus.port, { ca });
    expect(result.answered).toBe(false);
    const found = violations(await auditRecords(lab.gateway.audit, from));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^NO_IDENTITY TLS_HANDSHAKE/);
  });
});
