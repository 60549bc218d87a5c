// The protocols this gateway speaks, by how their commands are resolved to assets and points
// (src/assets/resolver.ts). A new protocol front adds its resolver here; policy is not touched.
import type { ResolverFactories } from '../src/assets/resolver.js';
import { modbusResolver } from './modbus/resolve.js';
import { opcuaResolver } from './opcua/resolve.js';

export const RESOLVERS: ResolverFactories = { modbus: modbusResolver, opcua: opcuaResolver };
