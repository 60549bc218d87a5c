// Alias of modbus-server.ts for callers that import the simulator as "sim/server" (the demo lab).
// Owns nothing; never add code here.
export { startSimulator, ModbusServer, type SimHandle, type SimulatorOptions } from './modbus-server.js';
