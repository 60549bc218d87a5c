// A third-party-shaped Modbus/TCP server for the fidelity tests: the 100/100/32/32 reference PLC
// with a device identity, written here from the specification (Modbus Application Protocol
// v1.1b3) the way pymodbus's server behaves, and on purpose sharing no code with plantgate (not
// its codec, not its simulator), so the gateway is tested against a PLC it was not built with.
// Checks in the specification's order: function code (0x01), quantity / byte count / value
// (0x03), address (0x02), then execution. Test helper, not a test.
import net from 'node:net';

export const REFERENCE_MAP = { coils: 100, discretes: 100, holding: 32, input: 32 } as const;
/** Read Device Identification objects by id (basic 0..2, regular 4). */
export const REFERENCE_IDENTITY: Record<number, string> = { 0: 'Acme Controls', 1: 'RC-100', 2: '2.1', 4: 'Reference PLC' };
const CATEGORY_END: Record<number, number> = { 1: 0x02, 2: 0x7f, 3: 0xff };

export interface ReceivedRequest {
  unitId: number;
  pdu: string;
}

export class ReferencePlc {
  coils = new Uint8Array(REFERENCE_MAP.coils);
  discretes = new Uint8Array(REFERENCE_MAP.discretes);
  holding = new Uint16Array(REFERENCE_MAP.holding);
  input = new Uint16Array(REFERENCE_MAP.input);
  /** Every request that reached this PLC (hex PDU), in arrival order. */
  readonly received: ReceivedRequest[] = [];
  private readonly server = net.createServer((s) => this.serve(s));
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor() {
    this.reset();
  }

  /** Back to the power-on state: inputs with a fixed pattern, outputs zero, nothing received. */
  reset(): void {
    this.coils.fill(0);
    this.holding.fill(0);
    for (let i = 0; i < this.discretes.length; i++) this.discretes[i] = i % 3 === 0 ? 1 : 0;
    for (let i = 0; i < this.input.length; i++) this.input[i] = 1000 + i;
    this.received.length = 0;
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 7) {
        const protocolId = buf.readUInt16BE(2);
        const length = buf.readUInt16BE(4);
        if (protocolId !== 0 || length < 2 || length > 254) {
          socket.destroy(); // broken framing: the stream cannot be trusted
          return;
        }
        if (buf.length < 6 + length) break;
        const tid = buf.readUInt16BE(0);
        const unitId = buf[6]!;
        const pdu = Buffer.from(buf.subarray(7, 6 + length));
        buf = buf.subarray(6 + length);
        this.received.push({ unitId, pdu: pdu.toString('hex') });
        const answer = this.execute(pdu);
        const mbap = Buffer.alloc(7);
        mbap.writeUInt16BE(tid, 0);
        mbap.writeUInt16BE(0, 2);
        mbap.writeUInt16BE(answer.length + 1, 4);
        mbap[6] = unitId;
        socket.write(Buffer.concat([mbap, answer]));
      }
    });
  }

  /** One request PDU to its response PDU (normal or exception). */
  execute(pdu: Buffer): Buffer {
    const fc = pdu[0]!;
    const ex = (code: number): Buffer => Buffer.from([fc | 0x80, code]);
    const u16 = (at: number): number => (pdu.length >= at + 2 ? pdu.readUInt16BE(at) : -1);
    switch (fc) {
      case 1:
      case 2: {
        const [addr, qty] = [u16(1), u16(3)];
        if (pdu.length !== 5 || qty < 1 || qty > 2000) return ex(3);
        const bits = fc === 1 ? this.coils : this.discretes;
        if (addr + qty > bits.length) return ex(2);
        const out = Buffer.alloc(2 + Math.ceil(qty / 8));
        out[0] = fc;
        out[1] = out.length - 2;
        for (let i = 0; i < qty; i++) if (bits[addr + i]) out[2 + (i >> 3)]! |= 1 << (i & 7);
        return out;
      }
      case 3:
      case 4: {
        const [addr, qty] = [u16(1), u16(3)];
        if (pdu.length !== 5 || qty < 1 || qty > 125) return ex(3);
        const regs = fc === 3 ? this.holding : this.input;
        if (addr + qty > regs.length) return ex(2);
        return this.registers(fc, regs, addr, qty);
      }
      case 5: {
        const [addr, value] = [u16(1), u16(3)];
        if (pdu.length !== 5 || (value !== 0xff00 && value !== 0)) return ex(3);
        if (addr >= this.coils.length) return ex(2);
        this.coils[addr] = value === 0xff00 ? 1 : 0;
        return pdu;
      }
      case 6: {
        const [addr, value] = [u16(1), u16(3)];
        if (pdu.length !== 5) return ex(3);
        if (addr >= this.holding.length) return ex(2);
        this.holding[addr] = value;
        return pdu;
      }
      case 15: {
        const [addr, qty, count] = [u16(1), u16(3), pdu[5] ?? -1];
        if (qty < 1 || qty > 1968 || count !== Math.ceil(qty / 8) || pdu.length !== 6 + count) return ex(3);
        if (addr + qty > this.coils.length) return ex(2);
        for (let i = 0; i < qty; i++) this.coils[addr + i] = (pdu[6 + (i >> 3)]! >> (i & 7)) & 1;
        return pdu.subarray(0, 5);
      }
      case 16: {
        const [addr, qty, count] = [u16(1), u16(3), pdu[5] ?? -1];
        if (qty < 1 || qty > 123 || count !== 2 * qty || pdu.length !== 6 + count) return ex(3);
        if (addr + qty > this.holding.length) return ex(2);
        for (let i = 0; i < qty; i++) this.holding[addr + i] = pdu.readUInt16BE(6 + 2 * i);
        return pdu.subarray(0, 5);
      }
      case 22: {
        const [addr, and, or] = [u16(1), u16(3), u16(5)];
        if (pdu.length !== 7) return ex(3);
        if (addr >= this.holding.length) return ex(2);
        this.holding[addr] = (this.holding[addr]! & and) | (or & ~and & 0xffff);
        return pdu;
      }
      case 23: {
        const [raddr, rqty, waddr, wqty, count] = [u16(1), u16(3), u16(5), u16(7), pdu[9] ?? -1];
        if (rqty < 1 || rqty > 125 || wqty < 1 || wqty > 121 || count !== 2 * wqty || pdu.length !== 10 + count) return ex(3);
        if (raddr + rqty > this.holding.length || waddr + wqty > this.holding.length) return ex(2);
        for (let i = 0; i < wqty; i++) this.holding[waddr + i] = pdu.readUInt16BE(10 + 2 * i);
        return this.registers(23, this.holding, raddr, rqty);
      }
      case 43: {
        if (pdu[1] !== 0x0e) return ex(1); // only Read Device Identification
        const [code, object] = [pdu[2] ?? 0, pdu[3] ?? -1];
        if (pdu.length !== 4 || code < 1 || code > 4) return ex(3);
        let ids: number[];
        if (code === 4) {
          if (REFERENCE_IDENTITY[object] === undefined) return ex(2);
          ids = [object];
        } else {
          const end = CATEGORY_END[code]!;
          const first = object <= end && REFERENCE_IDENTITY[object] !== undefined ? object : 0;
          ids = Object.keys(REFERENCE_IDENTITY).map(Number).filter((id) => id >= first && id <= end);
        }
        const objects = ids.map((id) => {
          const text = Buffer.from(REFERENCE_IDENTITY[id]!, 'latin1');
          return Buffer.concat([Buffer.from([id, text.length]), text]);
        });
        // Conformity 0x82: regular identification, stream and individual access.
        return Buffer.concat([Buffer.from([43, 0x0e, code, 0x82, 0, 0, ids.length]), ...objects]);
      }
      default:
        return ex(1);
    }
  }

  private registers(fc: number, regs: Uint16Array, addr: number, qty: number): Buffer {
    const out = Buffer.alloc(2 + 2 * qty);
    out[0] = fc;
    out[1] = 2 * qty;
    for (let i = 0; i < qty; i++) out.writeUInt16BE(regs[addr + i]!, 2 + 2 * i);
    return out;
  }
}
