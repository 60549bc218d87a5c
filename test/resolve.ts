// Tests that drive the policy engine directly resolve their commands as the gateway does: through
// the protocols' own resolvers (protocols/resolvers.ts), built once per engine's bundle.
import { bundleResolver, type CommandResolver } from '../src/assets/resolver.js';
import type { Command } from '../src/core/command.js';
import type { PolicyEngine } from '../src/policy/engine.js';
import { RESOLVERS } from '../protocols/resolvers.js';

const resolvers = new WeakMap<PolicyEngine, CommandResolver>();

export function resolverOf(engine: PolicyEngine): CommandResolver {
  let r = resolvers.get(engine);
  if (r === undefined) resolvers.set(engine, (r = bundleResolver(RESOLVERS, engine.assets)));
  return r;
}

/** A Modbus command as the gateway resolves it behind `unitId`; false when no asset answers there. */
export function resolveModbus(engine: PolicyEngine, cmd: Command, unitId: number): boolean {
  cmd.unitId = unitId;
  return resolverOf(engine).resolve(cmd);
}

export function resolveOpcua(engine: PolicyEngine, cmd: Command): void {
  resolverOf(engine).resolve(cmd);
}
