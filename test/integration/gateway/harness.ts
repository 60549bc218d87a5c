// Test harness for the gateway's failure-mode suites: a raw TLS agent (for frames modbus-serial
// cannot send), a PLC double (a real TCP server in front of the simulator that can fall silent,
// answer garbage or break framing on command), and readers for the audit log and its spool files.
// The PLC double is not the thing under test: it plays the misbehaving PLC the gateway must survive.
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { FrameDecoder, encodeFrame, type Frame } from '../../../protocols/modbus/codec.js';
import type { AuditLog } from '../../../src/audit/log.js';
import { decodeRecord, type DecodedRecord } from '../../../src/audit/schema.js';
import { putToken, type AgentCredentials } from '../../../src/cli/demo/agent.js';
import type { DemoAgent, Lab } from '../../../src/cli/demo/lab.js';

export const CORPUS_DIR = fileURLToPath(new URL('../../../fixtures/frames/', import.meta.url));

export interface CorpusCase {
  file: string;
  expect: string;
  bytes: Buffer;
}

/** fixtures/frames/*.hex (format in its README). */
export function loadCorpus(): CorpusCase[] {
  return readdirSync(CORPUS_DIR)
    .filter((f) => f.endsWith('.hex'))
    .sort()
    .map((file) => {
      const lines = readFileSync(path.join(CORPUS_DIR, file), 'utf8').split('\n');
      const expectLine = lines.find((l) => /^#\s*expect:/.test(l));
      if (expectLine === undefined) throw new Error(`${file}: no "# expect: CODE" line`);
      const hex = lines.filter((l) => !l.startsWith('#')).join('').replace(/\s+/g, '');
      return { file, expect: expectLine.replace(/^#\s*expect:\s*/, '').trim(), bytes: Buffer.from(hex, 'hex') };
    });
}

/** Resolves on the first call of a one-shot event, with a deadline so a broken gateway fails the test, not the run. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

export interface RawAgent {
  socket: tls.TLSSocket;
  closed: Promise<void>;
  send(transactionId: number, unitId: number, pdu: number[] | Buffer): void;
  receive(n: number): Promise<Frame[]>;
}

/** A Modbus/TCP Security connection that writes raw bytes and decodes whatever comes back. */
export async function rawAgent(port: number, creds: AgentCredentials): Promise<RawAgent> {
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...creds, servername: 'localhost' }, () => resolve(s));
    s.once('error', reject);
  });
  socket.on('error', () => undefined);
  const frames: Frame[] = [];
  let waiter: (() => void) | undefined;
  const decoder = new FrameDecoder(
    (f) => {
      frames.push({ ...f, pdu: Buffer.from(f.pdu) });
      waiter?.();
    },
    () => undefined,
  );
  socket.on('data', (c: Buffer) => decoder.push(c));
  let isClosed = false;
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      isClosed = true;
      waiter?.();
      resolve();
    }),
  );
  return {
    socket,
    closed,
    send: (tid, unit, pdu) => socket.write(encodeFrame(tid, unit, Buffer.from(pdu))),
    async receive(n: number): Promise<Frame[]> {
      while (frames.length < n) {
        if (isClosed) throw new Error(`connection closed after ${frames.length} of ${n} answers`);
        await new Promise<void>((r) => (waiter = r));
      }
      return frames.splice(0, n);
    },
  };
}

/** Puts a fresh token for `agent` on the gateway's agent API; throws unless it was accepted. */
export async function authenticate(lab: Lab, agent: DemoAgent, now?: number): Promise<void> {
  const api = lab.gateway.agentApi;
  const answer = await putToken(api.host, api.port, await lab.credentials(agent), await lab.token(agent, { now }));
  if (answer.status !== 200) throw new Error(`token for ${agent} refused: ${answer.status} ${JSON.stringify(answer.body)}`);
}

/** Every record the log holds from `fromSeq` on, decoded (after making everything appended durable). */
export async function auditRecords(audit: AuditLog, fromSeq = 0): Promise<DecodedRecord[]> {
  await audit.sync();
  const out: DecodedRecord[] = [];
  for (let seq = Math.max(fromSeq, audit.firstSeq); seq < audit.durableSeq; ) {
    const batch = await audit.readFrom(seq, 1000);
    if (batch.length === 0) break;
    for (const r of batch) out.push(decodeRecord(r.bytes));
    seq = batch[batch.length - 1].seq + 1;
  }
  return out;
}

/**
 * The records in the spool's segment files as the bytes on disk say, read synchronously so a
 * caller can look at the disk at one exact moment (e.g. when the PLC receives a write).
 */
export function spoolRecordsOnDisk(spoolDir: string): DecodedRecord[] {
  const out: DecodedRecord[] = [];
  for (const name of readdirSync(spoolDir).filter((n) => /^\d{16}\.seg$/.test(n)).sort()) {
    const bytes = readFileSync(path.join(spoolDir, name));
    let off = 0;
    while (off + 8 <= bytes.length) {
      const len = bytes.readUInt32BE(off);
      if (len === 0 || off + 8 + len > bytes.length) break;
      out.push(decodeRecord(bytes.subarray(off + 8, off + 8 + len)));
      off += 8 + len;
    }
  }
  return out;
}

export type PlcMode = 'forward' | 'silent' | 'mismatch' | 'corrupt';

/**
 * A PLC on 127.0.0.1 that forwards each request to the simulator (one simulator connection per
 * accepted connection) unless told to misbehave:
 * - silent: accepts and reads, never answers;
 * - mismatch: answers every request with a well-framed PDU of the wrong function code;
 * - corrupt: answers with a frame whose MBAP protocol id is not 0 (the stream is garbage).
 */
export class PlcDouble {
  mode: PlcMode = 'forward';
  /** Called for every complete request frame, before it is forwarded or answered. */
  onRequest: ((frame: Frame) => void) | undefined;
  accepted = 0;
  requests = 0;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private waiters: Array<() => void> = [];
  port = 0;

  /** Where 'forward' sends requests (settable after start: the lab starts the simulator later). */
  target: { host: string; port: number } | undefined;

  private constructor(target: { host: string; port: number } | undefined) {
    this.target = target;
    this.server = net.createServer((s) => this.accept(s));
  }

  static async start(target?: { host: string; port: number }, port = 0): Promise<PlcDouble> {
    const plc = new PlcDouble(target);
    await new Promise<void>((resolve, reject) => {
      plc.server.once('error', reject);
      plc.server.listen(port, '127.0.0.1', () => resolve());
    });
    plc.port = (plc.server.address() as net.AddressInfo).port;
    return plc;
  }

  /** Resolves once `predicate` holds (checked after each accepted connection and request). */
  until(predicate: () => boolean, what: string, ms = 5000): Promise<void> {
    return within(
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (predicate()) resolve();
          else this.waiters.push(check);
        };
        check();
      }),
      ms,
      what,
    );
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    this.accepted++;
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
    let upstream: net.Socket | undefined;
    if (this.target !== undefined) {
      upstream = net.connect(this.target);
      upstream.on('error', () => socket.destroy());
      upstream.on('close', () => socket.destroy());
      upstream.on('data', (c: Buffer) => socket.write(c));
      socket.on('close', () => upstream?.destroy());
    }
    const decoder = new FrameDecoder(
      (frame) => {
        this.requests++;
        this.onRequest?.(frame);
        switch (this.mode) {
          case 'forward':
            upstream?.write(encodeFrame(frame.transactionId, frame.unitId, frame.pdu));
            break;
          case 'silent':
            break;
          case 'mismatch':
            socket.write(encodeFrame(frame.transactionId, frame.unitId, Buffer.from([frame.functionCode === 0x11 ? 0x12 : 0x11, 0x00])));
            break;
          case 'corrupt':
            socket.write(Buffer.from([frame.transactionId >> 8, frame.transactionId & 0xff, 0x12, 0x34, 0x00, 0x03, frame.unitId, 0x03, 0x00]));
            break;
        }
        this.wake();
      },
      () => socket.destroy(),
    );
    socket.on('data', (c: Buffer) => decoder.push(c));
    this.wake();
  }

  /** Drops every open connection (the PLC rebooted); the listener stays up. */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * A startLab patchConfig that puts `plc` between the gateway and the simulator: the double forwards
 * to the simulator port the generated config names, and the gateway's upstream becomes the double.
 */
export function throughDouble(plc: PlcDouble, opts: { timeoutMs?: number; connections?: number } = {}) {
  return (yaml: string): string => {
    const m = /\n {4}port: (\d+)/.exec(yaml);
    if (m === null) throw new Error('generated gateway config has no upstream port');
    plc.target = { host: '127.0.0.1', port: Number(m[1]) };
    let out = yaml.replace(/(\n {4}port: )\d+/, `$1${plc.port}`);
    if (opts.timeoutMs !== undefined) out = out.replace(/(\n {4}timeout_ms: )\d+/, `$1${opts.timeoutMs}`);
    if (opts.connections !== undefined) out = out.replace(/(\n {4}connections: )\d+/, `$1${opts.connections}`);
    return out;
  };
}
