// The PLC simulator's public surface (docs/simulator.md): load a plant, run it, serve it over Modbus/TCP,
// drive its clock, inject faults, run scenarios, and read what actually reached the PLC.
export { loadPlant, parsePlant, findPoint, TABLES, POINT_TYPES, KNOWN_MODELS } from '../assets/plant.js';
export type { Plant, PlcDef, PointDef, PointType, WordOrder, SourcePos, UnknownUnitPolicy } from '../assets/plant.js';
export { BLOCK_KINDS, BLOCK_PARAMS, type BlockKind, type ProcessBlockDef } from '../assets/process-def.js';
export { wordsToRaw, rawToWords, rawToEngineering, engineeringToRaw, engineeringToRawClamped, wordsToEngineering, engineeringToWords } from '../assets/points.js';
export { PlcTables } from './tables.js';
export { createModel, WaterTankModel, WATER_TANK, MODEL_STEP_MS, type ProcessModel } from './model.js';
export { PlantRuntime, UnknownPointError, type RuntimeOptions, type PlantSnapshot } from './runtime.js';
export { ScaledClock } from './sim-clock.js';
// The clocks a harness drives the plant with (a ManualClock steps it by hand): `plantgate/sim` is
// all a harness imports.
export { ManualClock, systemClock, type Clock } from '../core/clock.js';
export { Rng } from './random.js';
export { FaultSet, FaultSpecError, FaultSpecSchema, MALFORMATIONS, corruptFrame, parseFaultSpec, type ActiveFault, type FaultSpec, type Malformation, type Verdict } from './faults.js';
export { RequestLog, ServedRequest, DEFAULT_LOG_CAPACITY, type Outcome } from './request-log.js';
export { handleRequest, DEVICE_IDENTITY } from './modbus-handler.js';
export { startSimulator, ModbusServer, type SimHandle, type SimulatorOptions, type PointValue, type PlcEndpoint, type ConnectionStats } from './modbus-server.js';
export { startSimApi, type SimApiHandle } from './http-api.js';
export { loadScenario, parseScenario, parseDuration, runScenario, type Scenario, type ScenarioRun, type StepRecord } from './scenario.js';
export { renderView } from './view.js';
// The OPC UA face (node-opcua, heavy) is imported from './opcua-server.js' directly when needed.
export type { OpcuaSimHandle, OpcuaSimulatorOptions, OpcuaServed } from './opcua-server.js';
