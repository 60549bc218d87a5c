// A raw Modbus/TCP client on our own codec, for function codes modbus-serial lacks and for
// watching exactly which frames come back (or do not). Test helper, not a test.
import net from 'node:net';
import { once } from 'node:events';
import { FrameDecoder, decodeResponse, encodeFrame, encodeRequest, type Frame, type Request, type Response } from '../../../protocols/modbus/codec.js';

export class RawClient {
  private readonly waiting: ((f: Frame | undefined) => void)[] = [];
  private readonly frames: Frame[] = [];
  private nextTid = 1;
  closed = false;
  /** Raw bytes received, for frames the decoder refuses. */
  readonly received: Buffer[] = [];

  constructor(readonly socket: net.Socket) {
    const decoder = new FrameDecoder(
      (f) => {
        const copy = { ...f, pdu: Buffer.from(f.pdu) };
        const w = this.waiting.shift();
        if (w) w(copy);
        else this.frames.push(copy);
      },
      () => undefined,
    );
    socket.on('data', (c: Buffer) => {
      this.received.push(Buffer.from(c));
      decoder.push(c);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w(undefined);
    });
  }

  static async connect(port: number): Promise<RawClient> {
    const s = net.connect(port, '127.0.0.1');
    await once(s, 'connect');
    return new RawClient(s);
  }

  /** The next frame, or undefined once the server closed the connection. */
  frame(): Promise<Frame | undefined> {
    const f = this.frames.shift();
    if (f) return Promise.resolve(f);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((r) => this.waiting.push(r));
  }

  send(req: Request, unitId = 1, tid = this.nextTid++ & 0xffff): number {
    this.socket.write(encodeFrame(tid, unitId, encodeRequest(req)));
    return tid;
  }

  async request(req: Request, unitId = 1): Promise<Response> {
    this.send(req, unitId);
    const f = await this.frame();
    if (f === undefined) throw new Error('connection closed');
    return decodeResponse(req, f.pdu);
  }

  close(): void {
    this.socket.destroy();
  }
}
