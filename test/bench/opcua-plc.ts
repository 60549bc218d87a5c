// The PLC of the OPC UA bench (test/bench/opcua.ts), in a process of its own as a real PLC is a
// device of its own: the water-treatment plant served over Modbus (interlock polling) and OPC UA
// (SignAndEncrypt) from one runtime. Prints one JSON line {"modbusPort","endpointUrl"} once both
// listen; stops on SIGTERM.
//   node dist/test/bench/opcua-plc.js CERT KEY PKI_DIR
import path from 'node:path';
import { PACKAGE_ROOT } from '../../src/cli/demo/lab.js';
import { startSimulator } from '../../src/sim/server.js';
import { startOpcuaSimulator } from '../../src/sim/opcua-server.js';

async function main(): Promise<void> {
  const [certificateFile, privateKeyFile, pkiDir] = process.argv.slice(2);
  if (certificateFile === undefined || privateKeyFile === undefined || pkiDir === undefined) throw new Error('usage: opcua-plc.js CERT KEY PKI_DIR');
  const sim = await startSimulator({ plant: path.join(PACKAGE_ROOT, 'fixtures/plants/water-treatment.yaml'), host: '127.0.0.1', port: 0 });
  const ua = await startOpcuaSimulator({ runtime: sim.runtime, host: '127.0.0.1', port: 0, security: 'secure', certificateFile, privateKeyFile, pkiDir });
  process.stdout.write(`${JSON.stringify({ modbusPort: sim.port, endpointUrl: ua.endpointUrl })}\n`);
  process.once('SIGTERM', () => {
    void ua
      .close()
      .then(() => sim.close())
      .then(() => process.exit(0));
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
