// The PLC simulator's public surface (DESIGN §9): load a plant, run it, serve it over Modbus/TCP.
export { loadPlant, parsePlant, findPoint, TABLES, POINT_TYPES, KNOWN_MODELS } from './plant.js';
export type { Plant, PlcDef, PointDef, PointType, WordOrder, SourcePos } from './plant.js';
export { wordsToRaw, rawToWords, rawToEngineering, engineeringToRaw, wordsToEngineering, engineeringToWords } from './points.js';
export { PlcTables } from './tables.js';
export { createModel, WaterTankModel, WATER_TANK, MODEL_STEP_MS, type ProcessModel } from './model.js';
export { PlantRuntime, UnknownPointError } from './runtime.js';
export { handleRequest, DEVICE_IDENTITY } from './modbus-handler.js';
export { startSimulator, ModbusServer, type SimHandle, type SimulatorOptions } from './modbus-server.js';
