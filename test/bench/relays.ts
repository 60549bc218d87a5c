// The relays the gateway is compared with, each run as its own process by the throughput bench:
//   node dist/test/bench/relays.js pipe    LISTEN_PORT TARGET_PORT
//   node dist/test/bench/relays.js framing LISTEN_PORT TARGET_PORT
// `pipe` is what a plant gets from a few lines of Node: bytes in, bytes out, one upstream socket per
// agent. `framing` is the gateway with every enforcement step switched off: the project's own codec
// and upstream pool (MBAP reassembly and validation, agents multiplexed onto a shared pool with
// transaction-id remapping, writes coalesced per event-loop turn), plaintext. gateway ÷ framing is
// the cost of enforcement. Prints "ready" on stdout once listening.
import net from 'node:net';
import { FrameDecoder, decodeRequest, encodeFrame, exceptionPdu, type Frame } from '../../protocols/modbus/codec.js';
import { UpstreamPool, type UpstreamResult } from '../../protocols/modbus/upstream.js';

const [mode, listenPort, targetPort] = process.argv.slice(2);
const target = { host: '127.0.0.1', port: Number(targetPort) };

function pipeRelay(socket: net.Socket): void {
  socket.setNoDelay(true);
  const up = net.connect({ ...target, noDelay: true });
  socket.pipe(up).pipe(socket);
  const end = () => {
    socket.destroy();
    up.destroy();
  };
  socket.on('error', end).on('close', end);
  up.on('error', end).on('close', end);
}

function framingRelay(pool: UpstreamPool): (socket: net.Socket) => void {
  return (socket) => {
    socket.setNoDelay(true);
    // Answers leave in request order, as in the gateway's listener.
    const slots: { tid: number; unit: number; answer: Buffer | undefined }[] = [];
    let corked = false;
    const uncork = () => {
      corked = false;
      socket.uncork();
    };
    const finish = () => {
      if (!corked) {
        corked = true;
        socket.cork();
        process.nextTick(uncork);
      }
      let head = 0;
      while (head < slots.length && slots[head].answer !== undefined) {
        socket.write(encodeFrame(slots[head].tid, slots[head].unit, slots[head].answer as Buffer));
        head++;
      }
      if (head > 0) slots.splice(0, head);
    };
    const decoder = new FrameDecoder(
      (frame: Frame) => {
        const slot = { tid: frame.transactionId, unit: frame.unitId, answer: undefined as Buffer | undefined };
        slots.push(slot);
        let request;
        try {
          request = decodeRequest(frame.pdu);
        } catch {
          slot.answer = exceptionPdu(frame.functionCode, 0x01);
          finish();
          return;
        }
        pool.send(frame.unitId, frame.pdu, request, (r: UpstreamResult) => {
          slot.answer = r.kind === 'response' ? r.pdu : exceptionPdu(frame.functionCode, r.kind === 'timeout' ? 0x0b : 0x0a);
          finish();
        });
      },
      () => socket.destroy(),
    );
    socket.on('data', (c: Buffer) => decoder.push(c));
    socket.on('error', () => socket.destroy());
  };
}

let onConnection: (socket: net.Socket) => void;
if (mode === 'pipe') {
  onConnection = pipeRelay;
} else if (mode === 'framing') {
  const pool = new UpstreamPool({ ...target, connections: 2 });
  await pool.ready();
  onConnection = framingRelay(pool);
} else {
  console.error(`usage: relays.js pipe|framing LISTEN_PORT TARGET_PORT`);
  process.exit(2);
}
const server = net.createServer(onConnection);
server.listen(Number(listenPort), '127.0.0.1', () => console.log('ready'));
process.on('SIGTERM', () => process.exit(0));
