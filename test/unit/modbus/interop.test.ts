// The codec against the outside world, without sockets: the worked examples of the Modbus
// Application Protocol v1.1b3 (§6), and modbus-serial (a third-party client agents really use),
// driven through an in-memory serial port so its own request builder and response parser run.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import ModbusSerial from 'modbus-serial';
import {
  classifyFunctionCode,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  fileRecordRefs,
  tableForFunctionCode,
  type Request,
  type Response,
} from '../../../protocols/modbus/codec.js';

// modbus-serial is CommonJS: under NodeNext its class is the namespace's `default` (it sets
// module.exports.default = module.exports, so this is the class at runtime too).
const ModbusRTU = ModbusSerial.default;
type ModbusRTU = InstanceType<typeof ModbusRTU>;

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

describe('the worked examples of Modbus Application Protocol v1.1b3', () => {
  // [section, request, request PDU, response, response PDU]
  const examples: [string, Request, string, Response, string][] = [
    ['6.1 read coils 20-38', { fc: 1, address: 19, quantity: 19 }, '01 0013 0013',
      { fc: 1, values: bits(0x56bcd, 19) }, '01 03 cd 6b 05'],
    ['6.2 read discrete inputs 197-218', { fc: 2, address: 196, quantity: 22 }, '02 00c4 0016',
      { fc: 2, values: bits(0x35dbac, 22) }, '02 03 ac db 35'],
    ['6.3 read holding registers 108-110', { fc: 3, address: 107, quantity: 3 }, '03 006b 0003',
      { fc: 3, values: [0x022b, 0, 0x64] }, '03 06 022b 0000 0064'],
    ['6.4 read input register 9', { fc: 4, address: 8, quantity: 1 }, '04 0008 0001',
      { fc: 4, values: [10] }, '04 02 000a'],
    ['6.5 write coil 173 ON', { fc: 5, address: 172, value: true }, '05 00ac ff00',
      { fc: 5, address: 172, value: true }, '05 00ac ff00'],
    ['6.6 write register 2 = 3', { fc: 6, address: 1, value: 3 }, '06 0001 0003',
      { fc: 6, address: 1, value: 3 }, '06 0001 0003'],
    ['6.7 read exception status', { fc: 7 }, '07', { fc: 7, raw: hex('07 6d') }, '07 6d'],
    ['6.8 diagnostics return query data', { fc: 8, subFunction: 0, data: hex('a537') }, '08 0000 a537',
      { fc: 8, raw: hex('08 0000 a537') }, '08 0000 a537'],
    ['6.9 get comm event counter', { fc: 11 }, '0b', { fc: 11, raw: hex('0b ffff 0108') }, '0b ffff 0108'],
    ['6.10 get comm event log', { fc: 12 }, '0c', { fc: 12, raw: hex('0c 08 0000 0108 0121 2000') }, '0c 08 0000 0108 0121 2000'],
    ['6.11 write 10 coils from 20', { fc: 15, address: 19, quantity: 10, values: bits(0x01cd, 10) }, '0f 0013 000a 02 cd 01',
      { fc: 15, address: 19, quantity: 10 }, '0f 0013 000a'],
    ['6.12 write registers 2-3', { fc: 16, address: 1, quantity: 2, values: [0x000a, 0x0102] }, '10 0001 0002 04 000a 0102',
      { fc: 16, address: 1, quantity: 2 }, '10 0001 0002'],
    ['6.14 read file record', { fc: 20, data: hex('06 0004 0001 0002 06 0003 0009 0002') }, '14 0e 06 0004 0001 0002 06 0003 0009 0002',
      { fc: 20, raw: hex('14 0c 05 06 0dfe 0020 05 06 33cd 0040') }, '14 0c 05 06 0dfe 0020 05 06 33cd 0040'],
    ['6.15 write file record', { fc: 21, data: hex('06 0004 0007 0003 06af 04be 100d') }, '15 0d 06 0004 0007 0003 06af 04be 100d',
      { fc: 21, raw: hex('15 0d 06 0004 0007 0003 06af 04be 100d') }, '15 0d 06 0004 0007 0003 06af 04be 100d'],
    ['6.16 mask write register 4', { fc: 22, address: 4, andMask: 0xf2, orMask: 0x25 }, '16 0004 00f2 0025',
      { fc: 22, address: 4, andMask: 0xf2, orMask: 0x25 }, '16 0004 00f2 0025'],
    ['6.17 read/write multiple registers',
      { fc: 23, readAddress: 3, readQuantity: 6, writeAddress: 14, writeQuantity: 3, values: [0xff, 0xff, 0xff] },
      '17 0003 0006 000e 0003 06 00ff 00ff 00ff',
      { fc: 23, values: [0x00fe, 0x0acd, 0x0001, 0x0003, 0x000d, 0x00ff] }, '17 0c 00fe 0acd 0001 0003 000d 00ff'],
    ['6.18 read FIFO queue at 1246', { fc: 24, address: 0x04de }, '18 04de',
      { fc: 24, raw: hex('18 0006 0002 01b8 1284') }, '18 0006 0002 01b8 1284'],
    ['7 exception: read coils at an illegal address', { fc: 1, address: 0x04a1, quantity: 1 }, '01 04a1 0001',
      { fc: 1, exception: 2 }, '81 02'],
  ];

  it.each(examples)('%s', (_name, req, reqHex, res, resHex) => {
    expect(encodeRequest(req).toString('hex')).toBe(hex(reqHex).toString('hex'));
    expect(decodeRequest(hex(reqHex))).toEqual(req);
    expect(encodeResponse(res).toString('hex')).toBe(hex(resHex).toString('hex'));
    expect(decodeResponse(req, hex(resHex))).toEqual(res);
  });
});

/** count bits of `value`, LSB first: how the spec's examples list coil states. */
function bits(value: number, count: number): boolean[] {
  return Array.from({ length: count }, (_, i) => Math.floor(value / 2 ** i) % 2 === 1);
}

describe('file record references', () => {
  it('lists the file, record and length each FC20 / FC21 sub-request addresses', () => {
    const read = decodeRequest(hex('14 0e 06 0004 0001 0002 06 0003 0009 0002'));
    const write = decodeRequest(hex('15 0d 06 0004 0007 0003 06af 04be 100d'));
    if (read.fc !== 20 || write.fc !== 21) throw new Error('unexpected decode');
    expect(fileRecordRefs(read)).toEqual([
      { fileNumber: 4, recordNumber: 1, recordLength: 2 },
      { fileNumber: 3, recordNumber: 9, recordLength: 2 },
    ]);
    expect(fileRecordRefs(write)).toEqual([{ fileNumber: 4, recordNumber: 7, recordLength: 3 }]);
  });
});

describe('function code classes', () => {
  it('classifies every public function code and denies the rest', () => {
    const classes = Object.fromEntries([1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43].map((f) => [f, classifyFunctionCode(f)]));
    expect(classes).toEqual({
      1: 'read', 2: 'read', 3: 'read', 4: 'read', 20: 'read', 24: 'read',
      5: 'write', 6: 'write', 15: 'write', 16: 'write', 21: 'write', 22: 'write', 23: 'write',
      7: 'diagnostic', 8: 'diagnostic', 11: 'diagnostic', 12: 'diagnostic', 17: 'diagnostic', 43: 'diagnostic',
    });
    for (const f of [0, 9, 10, 13, 14, 18, 19, 25, 41, 65, 0x83, 255, 256, -1, 3.5, NaN]) expect(classifyFunctionCode(f)).toBeUndefined();
    expect(tableForFunctionCode(1)).toBe('coil');
    expect(tableForFunctionCode(4)).toBe('input');
    expect(tableForFunctionCode(23)).toBe('holding');
    expect(tableForFunctionCode(8)).toBeUndefined();
  });
});

// CRC-16/MODBUS, only to wrap PDUs in the RTU framing modbus-serial's client speaks to a port.
function crc16(buf: Buffer): number {
  let crc = 0xffff;
  for (const b of buf) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

/**
 * An in-memory serial port: records what modbus-serial writes (unit id + PDU + CRC) and answers
 * with the PDU our encoder produces for it, so both the client's builder and parser are exercised.
 */
class LoopbackPort extends EventEmitter {
  readonly isOpen = true;
  readonly requests: Buffer[] = [];
  constructor(private readonly answer: (request: Request) => Response) {
    super();
  }
  open(cb: (err: Error | null) => void): void {
    cb(null);
  }
  close(cb?: (err: Error | null) => void): void {
    cb?.(null);
  }
  write(rtu: Buffer): void {
    const pdu = rtu.subarray(1, rtu.length - 2);
    this.requests.push(Buffer.from(pdu));
    const responsePdu = encodeResponse(this.answer(decodeRequest(pdu)));
    const reply = Buffer.concat([Buffer.from([rtu[0]]), responsePdu, Buffer.alloc(2)]);
    reply.writeUInt16LE(crc16(reply.subarray(0, -2)), reply.length - 2);
    setImmediate(() => this.emit('data', reply));
  }
}

/** FC23 through modbus-serial's callback API (its typings have no promise form for it). */
function readWrite(c: ModbusRTU, readAddress: number, readQuantity: number, writeAddress: number, values: number[]): Promise<{ data: number[] }> {
  return new Promise((resolve, reject) =>
    c.writeFC23(c.getID(), readAddress, readQuantity, writeAddress, values.length, values, (err: Error | null, res: { data: number[] }) => (err ? reject(err) : resolve(res))),
  );
}

describe('interoperates with modbus-serial', () => {
  async function client(answer: (request: Request) => Response): Promise<{ c: ModbusRTU; port: LoopbackPort }> {
    const port = new LoopbackPort(answer);
    const c = new ModbusRTU(port);
    await new Promise<void>((resolve, reject) => c.open((err: Error | null) => (err ? reject(err) : resolve())));
    c.setID(17);
    c.setTimeout(1000);
    return { c, port };
  }

  it('decodes the requests modbus-serial builds, byte for byte what our encoder builds', async () => {
    const { c, port } = await client((req) => {
      switch (req.fc) {
        case 1:
        case 2:
          return { fc: req.fc, values: bits(0x2b5, req.quantity) };
        case 3:
        case 4:
          return { fc: req.fc, values: Array.from({ length: req.quantity }, (_, i) => 1000 + i) };
        case 23:
          return { fc: 23, values: Array.from({ length: req.readQuantity }, (_, i) => 7 * i) };
        case 5:
        case 6:
        case 22:
          return { ...req };
        case 15:
        case 16:
          return { fc: req.fc, address: req.address, quantity: req.quantity };
        case 43:
          return { fc: 43, raw: Buffer.concat([hex('2b 0e 01 01 00 00 02'), hex('00 03'), Buffer.from('ACM'), hex('01 02'), Buffer.from('X1')]) };
        default:
          return { fc: req.fc, exception: 1 };
      }
    });

    expect((await c.readCoils(19, 10)).data.slice(0, 10)).toEqual(bits(0x2b5, 10));
    expect((await c.readDiscreteInputs(196, 22)).data.slice(0, 22)).toEqual(bits(0x2b5, 22));
    expect((await c.readHoldingRegisters(107, 3)).data).toEqual([1000, 1001, 1002]);
    expect((await c.readInputRegisters(8, 125)).data).toHaveLength(125);
    expect(await c.writeCoil(172, true)).toEqual({ address: 172, state: true });
    expect(await c.writeRegister(1, 0xbeef)).toEqual({ address: 1, value: 0xbeef });
    expect(await c.writeCoils(19, bits(0x1cd, 10))).toEqual({ address: 19, length: 10 });
    expect(await c.writeRegisters(1, [10, 258])).toEqual({ address: 1, length: 2 });
    await c.maskWriteRegister(4, 0xf2, 0x25);
    expect((await readWrite(c, 3, 6, 14, [255, 255, 255])).data).toEqual([0, 7, 14, 21, 28, 35]);
    expect((await c.readDeviceIdentification(1, 0)).data).toEqual({ 0: 'ACM', 1: 'X1' });

    const expected: Request[] = [
      { fc: 1, address: 19, quantity: 10 },
      { fc: 2, address: 196, quantity: 22 },
      { fc: 3, address: 107, quantity: 3 },
      { fc: 4, address: 8, quantity: 125 },
      { fc: 5, address: 172, value: true },
      { fc: 6, address: 1, value: 0xbeef },
      { fc: 15, address: 19, quantity: 10, values: bits(0x1cd, 10) },
      { fc: 16, address: 1, quantity: 2, values: [10, 258] },
      { fc: 22, address: 4, andMask: 0xf2, orMask: 0x25 },
      { fc: 23, readAddress: 3, readQuantity: 6, writeAddress: 14, writeQuantity: 3, values: [255, 255, 255] },
      { fc: 43, meiType: 14, data: hex('01 00') },
    ];
    expect(port.requests.map((pdu) => decodeRequest(pdu))).toEqual(expected);
    expect(port.requests.map((pdu) => pdu.toString('hex'))).toEqual(expected.map((r) => encodeRequest(r).toString('hex')));
  });

  it('surfaces our exception responses to modbus-serial as the Modbus exception code', async () => {
    const { c } = await client((req) => ({ fc: req.fc, exception: 2 }));
    await expect(c.readHoldingRegisters(0, 1)).rejects.toMatchObject({ modbusCode: 2 });
    await expect(c.writeRegister(0, 1)).rejects.toMatchObject({ modbusCode: 2 });
  });
});
