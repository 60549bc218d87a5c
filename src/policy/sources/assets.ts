// The assets section of the policy sources: ids, zones, unit ids, plant files (points_from), OPC UA
// namespaces, node ids and methods, compiled into the bundle's assets. Part of the rule compiler
// (src/policy/sources.ts); never reads rules.
import path from 'node:path';
import type { Node } from 'yaml';
import { SourceError, SourceErrors } from '../../core/errors.js';
import { loadPlant, type Plant } from '../../assets/plant.js';
import { describeOpcua } from '../../assets/opcua-face.js';
import { nodeIdProblem } from '../../assets/node-id.js';
import { ARGUMENT_TYPES, CRITICALITIES, type AddressRange, type BundleAsset, type MethodArgument, type MethodDef, type PointDef } from '../payload.js';
import { ID_RE, SourceFile, displayPath, type Entries } from './source-file.js';

const ASSET_KEYS = ['id', 'zone', 'criticality', 'protocol', 'unit_id', 'plc', 'namespace', 'points_from', 'node_ids', 'object_node', 'methods'];
const METHOD_KEYS = ['node_id', 'inputs', 'outputs'];
const ARGUMENT_KEYS = ['name', 'type', 'min', 'max'];

export async function compileAssets(
  f: SourceFile,
  top: Entries,
  dir: string,
  rootNode: Node,
  errors: SourceError[],
): Promise<{ assets: BundleAsset[]; points: Map<string, string[]> }> {
  const assets: BundleAsset[] = [];
  const points = new Map<string, string[]>();
  const pair = top.get('assets');
  if (pair === undefined) {
    f.fail(rootNode, 'assets', 'is required');
    return { assets, points };
  }
  const items = f.seq(f.valueNode(pair), 'assets', 'of assets');
  const plants = new Map<string, Promise<Plant | SourceErrors>>();
  const ids = new Map<string, Node>();
  const units = new Map<number, string>();
  for (const [i, item] of (items ?? []).entries()) {
    const field = `assets[${i}]`;
    const e = f.map(item, field, ASSET_KEYS, 'with id, zone, criticality, protocol, unit_id (Modbus), points_from');
    if (e === undefined) continue;
    const node = item!;
    let id = f.str(node, e, 'id', `${field}.id`, true);
    if (id !== undefined && !ID_RE.test(id)) id = f.fail(e.get('id')!.value, `${field}.id`, `'${id}' must match ${ID_RE.source}`);
    if (id !== undefined) {
      const prev = ids.get(id);
      if (prev) id = f.fail(e.get('id')!.value, `${field}.id`, `duplicate asset id '${id}' (first at ${f.where(prev)})`);
      else ids.set(id, e.get('id')!.value!);
    }
    const zone = f.str(node, e, 'zone', `${field}.zone`, true);
    const criticality = f.oneOf(node, e, 'criticality', `${field}.criticality`, CRITICALITIES);
    const protocol = f.oneOf(node, e, 'protocol', `${field}.protocol`, ['modbus', 'opcua'] as const);
    // OPC UA assets have no unit id (0 in the bundle); one given is checked but means nothing.
    const unitId = protocol === 'opcua' && !e.has('unit_id') ? 0 : f.int(node, e, 'unit_id', `${field}.unit_id`, 0, 255);
    if (unitId !== undefined && protocol === 'modbus') {
      const other = units.get(unitId);
      if (other !== undefined) f.fail(e.get('unit_id')!.value, `${field}.unit_id`, `unit id ${unitId} is already used by asset '${other}'`);
      else if (id !== undefined) units.set(unitId, id);
    }
    // Which PLC of the plant file: `plc:`, default the asset id (an OPC UA asset of a PLC that also
    // has a Modbus asset needs its own id, so it names the PLC).
    const plcName = f.str(node, e, 'plc', `${field}.plc`, false);
    // An OPC UA server describes itself (the gateway browses it), and rules that name only address
    // ranges need no names: such an asset needs no point map.
    const from = f.str(node, e, 'points_from', `${field}.points_from`, false);
    let pointMap: Record<string, PointDef> | undefined = from === undefined && !e.has('points_from') ? {} : undefined;
    let readOnly: AddressRange[] | undefined;
    let face: ReturnType<typeof describeOpcua>[number] | undefined;
    if (from !== undefined && id !== undefined) {
      const fromNode = e.get('points_from')!.value!;
      const abs = path.resolve(dir, from);
      let pending = plants.get(abs);
      if (!pending) {
        pending = loadPlant(displayPath(abs)).catch((err: unknown) => {
          if (err instanceof SourceErrors) return err;
          return new SourceErrors([new SourceError(displayPath(abs), 1, 1, 'file', String(err))]);
        });
        plants.set(abs, pending);
      }
      const plant = await pending;
      const plcId = plcName ?? id;
      if (plant instanceof SourceErrors) {
        // Report the plant file's own problems once, and where it was referenced.
        if (!plant.errors.some((x) => errors.includes(x))) errors.push(...plant.errors);
        f.fail(fromNode, `${field}.points_from`, `plant file '${displayPath(abs)}' is invalid (see above)`);
      } else {
        const plc = plant.plcs.find((p) => p.id === plcId);
        if (!plc) {
          const where = plcName !== undefined ? e.get('plc')!.value : fromNode;
          f.fail(where, plcName !== undefined ? `${field}.plc` : `${field}.points_from`, `plant '${plant.name}' has no PLC with id '${plcId}' (has ${plant.plcs.map((p) => p.id).join(', ')})`);
        } else {
          pointMap = {};
          readOnly = plc.registers.filter((r) => r.readOnly).map((r) => ({ table: r.table, from: r.from, to: r.to }));
          for (const p of plc.points) {
            const def: PointDef = { table: p.table, address: p.address, type: p.type };
            if (p.length !== undefined) def.length = p.length;
            if (p.type !== 'string' && p.words === 2) def.word_order = p.wordOrder;
            if (p.scale !== 1) def.scale = p.scale;
            if (p.offset !== 0) def.offset = p.offset;
            if (p.unit !== undefined) def.unit = p.unit;
            pointMap[p.name] = def;
            if (p.readOnly === true) readOnly.push({ table: p.table, from: p.address, to: p.address + p.words - 1 });
          }
          if (unitId !== undefined && protocol === 'modbus' && plc.unitId !== unitId) {
            f.fail(e.get('unit_id')!.value, `${field}.unit_id`, `${unitId} differs from PLC '${plcId}' unit_id ${plc.unitId} in the plant file`);
          }
          if (protocol === 'opcua') face = describeOpcua({ ...plant, plcs: [plc] })[0];
        }
      }
    }
    // OPC UA: the server's namespace URI and a NodeId per point the agents may address. The plant
    // file's OPC UA face (the simulator's derivation) gives defaults; the asset may override them.
    for (const key of ['namespace', 'node_ids', 'object_node', 'methods']) {
      const kp = e.get(key);
      if (kp && protocol === 'modbus') f.fail(kp.key, `${field}.${key}`, `only OPC UA assets have ${key}`);
    }
    let namespace: string | undefined;
    let objectNode: string | undefined;
    let methods: Record<string, MethodDef> | undefined;
    let opcuaOk = true;
    if (protocol === 'opcua') {
      namespace = f.str(node, e, 'namespace', `${field}.namespace`, false) ?? face?.namespaceUri;
      if (namespace === undefined && !e.has('namespace')) f.fail(node, `${field}.namespace`, "is required (or points_from a plant file whose OPC UA face gives it)");
      if (namespace === undefined) opcuaOk = false;
      const ns = namespace ?? '';
      /** The canonical NodeId, or undefined after reporting why the text cannot be one. */
      const expand = (n: Node, nf: string, text: string | undefined): string | undefined => {
        if (text === undefined) return undefined;
        const problem = nodeIdProblem(ns, text);
        if (problem !== null) return f.fail(n, nf, problem);
        return text.startsWith('nsu=') ? text : `nsu=${ns};${text}`;
      };
      const seenNodes = new Map<string, string>();
      const claim = (n: Node, nf: string, nodeId: string, owner: string): boolean => {
        const prev = seenNodes.get(nodeId);
        if (prev !== undefined) {
          f.fail(n, nf, `NodeId '${nodeId}' is already mapped to '${prev}'`);
          return false;
        }
        seenNodes.set(nodeId, owner);
        return true;
      };
      const op = e.get('object_node');
      if (op) objectNode = expand(f.valueNode(op), `${field}.object_node`, f.strNode(f.valueNode(op), `${field}.object_node`));
      // A browsed server has no object of its own in the asset: rules' nodes: cover what it serves.
      else if (namespace !== undefined && from !== undefined) objectNode = `nsu=${ns};${face?.folderIdentifier ?? `s=${id ?? ''}`}`;
      if (objectNode !== undefined) claim(op ? f.valueNode(op) : node, `${field}.object_node`, objectNode, `the object of asset '${id ?? ''}'`);
      else if (namespace !== undefined && from !== undefined) opcuaOk = false;

      const nip = e.get('node_ids');
      if (nip && from === undefined) f.fail(nip.key, `${field}.node_ids`, 'node_ids name points of a plant file (points_from); a browsed server is covered by rules\' nodes:');
      else if (nip && pointMap && namespace !== undefined) {
        // Listed: exactly these points are exposed over OPC UA.
        const ne = f.freeMap(f.valueNode(nip), `${field}.node_ids`, 'point name -> NodeId');
        for (const [point, pair] of ne ?? []) {
          const nf = `${field}.node_ids.${point}`;
          const vn = f.valueNode(pair);
          const nodeId = expand(vn, nf, f.strNode(vn, nf));
          if (nodeId === undefined) continue;
          if (pointMap[point] === undefined) f.fail(pair.key, nf, `'${point}' is not a point of asset '${id}'`);
          else if (claim(vn, nf, nodeId, point)) pointMap[point] = { ...pointMap[point]!, node_id: nodeId };
        }
      } else if (pointMap && face && namespace !== undefined) {
        // Not listed: every point, under the NodeIds the plant's OPC UA face serves.
        for (const p of face.points) {
          const nodeId = `nsu=${ns};${p.identifier}`;
          if (pointMap[p.name] !== undefined && claim(node, `${field}.node_ids`, nodeId, p.name)) pointMap[p.name] = { ...pointMap[p.name]!, node_id: nodeId };
        }
      }

      const mp = e.get('methods');
      if (mp && namespace !== undefined) {
        methods = compileMethods(f, f.valueNode(mp), `${field}.methods`, (n, nf, text) => expand(n, nf, text), claim, pointMap);
        if (methods === undefined) opcuaOk = false;
      } else if (face && namespace !== undefined && face.methods.length > 0) {
        methods = {};
        for (const m of face.methods) {
          const nodeId = `nsu=${ns};${m.identifier}`;
          if (!claim(node, `${field}.methods`, nodeId, m.name)) continue;
          methods[m.name] = {
            node_id: nodeId,
            inputs: m.inputs.map((a) => ({ name: a.name, type: a.dataType })),
            outputs: m.outputs.map((a) => ({ name: a.name, type: a.dataType })),
          };
        }
      }
    }
    if (id && zone && criticality && protocol && unitId !== undefined && pointMap && opcuaOk) {
      const asset: BundleAsset = { id, zone, criticality, protocol, unit_id: unitId, points: pointMap };
      if (protocol === 'modbus' && readOnly !== undefined && readOnly.length > 0) asset.read_only = readOnly;
      if (protocol === 'opcua') {
        asset.namespace = namespace!;
        if (objectNode !== undefined) asset.object_node = objectNode;
        if (methods !== undefined && Object.keys(methods).length > 0) asset.methods = methods;
      }
      assets.push(asset);
      // Rules name methods like points (`points: [pump1.start]` with `operations: [call]`).
      points.set(id, [...Object.keys(pointMap), ...Object.keys(asset.methods ?? {})]);
    }
  }
  return { assets, points };
}

/**
 * `methods:` of an OPC UA asset: name -> { node_id, inputs: [{ name, type, min, max }], outputs }.
 * Input bounds are hard limits of the asset: a call outside them is denied VALUE_OUT_OF_BOUNDS.
 */
function compileMethods(
  f: SourceFile,
  node: Node,
  field: string,
  expand: (n: Node, nf: string, text: string | undefined) => string | undefined,
  claim: (n: Node, nf: string, nodeId: string, owner: string) => boolean,
  pointMap: Record<string, PointDef> | undefined,
): Record<string, MethodDef> | undefined {
  const me = f.freeMap(node, field, 'method name -> { node_id, inputs, outputs }');
  if (me === undefined) return undefined;
  const out: Record<string, MethodDef> = {};
  let ok = true;
  for (const [name, pair] of me) {
    const mf = `${field}.${name}`;
    const vn = f.valueNode(pair);
    const e = f.map(vn, mf, METHOD_KEYS, 'with node_id, inputs, outputs');
    if (e === undefined) {
      ok = false;
      continue;
    }
    if (pointMap?.[name] !== undefined) {
      f.fail(pair.key, mf, `'${name}' is already a point of the asset: rules could not tell them apart`);
      ok = false;
      continue;
    }
    const nodeId = expand(e.get('node_id')?.value ?? vn, `${mf}.node_id`, f.str(vn, e, 'node_id', `${mf}.node_id`, true));
    if (nodeId === undefined || !claim(e.get('node_id')!.value!, `${mf}.node_id`, nodeId, name)) {
      ok = false;
      continue;
    }
    const args = (key: 'inputs' | 'outputs'): MethodArgument[] | undefined => {
      const ap = e.get(key);
      if (ap === undefined) return [];
      const items = f.seq(f.valueNode(ap), `${mf}.${key}`, 'of { name, type, min, max }');
      if (items === undefined) return undefined;
      const list: MethodArgument[] = [];
      const names = new Set<string>();
      let good = true;
      items.forEach((item, i) => {
        const af = `${mf}.${key}[${i}]`;
        const ae = f.map(item, af, ARGUMENT_KEYS, `with name, type (${ARGUMENT_TYPES.join(', ')}), min, max`);
        if (ae === undefined) return (good = false);
        const argName = f.str(item!, ae, 'name', `${af}.name`, true);
        const type = f.oneOf(item!, ae, 'type', `${af}.type`, ARGUMENT_TYPES);
        const min = f.num(ae, 'min', `${af}.min`);
        const max = f.num(ae, 'max', `${af}.max`);
        if (argName === undefined || type === undefined || (ae.has('min') && min === undefined) || (ae.has('max') && max === undefined)) return (good = false);
        if (names.has(argName)) {
          f.fail(ae.get('name')!.value, `${af}.name`, `duplicate argument '${argName}'`);
          return (good = false);
        }
        names.add(argName);
        if (key === 'outputs' && (min !== undefined || max !== undefined)) {
          f.fail(item, af, 'bounds apply to inputs only');
          return (good = false);
        }
        if (min !== undefined && max !== undefined && min > max) {
          f.fail(ae.get('max')!.value, `${af}.max`, `${max} is below min (${min})`);
          return (good = false);
        }
        const arg: MethodArgument = { name: argName, type };
        if (min !== undefined) arg.min = min;
        if (max !== undefined) arg.max = max;
        list.push(arg);
        return true;
      });
      return good ? list : undefined;
    };
    const inputs = args('inputs');
    const outputs = args('outputs');
    if (inputs === undefined || outputs === undefined) {
      ok = false;
      continue;
    }
    out[name] = { node_id: nodeId, inputs, outputs };
  }
  return ok ? out : undefined;
}

/**
 * `nodes:` of a rule: OPC UA nodes by NodeId glob (`node`) and/or browse path glob (`path`), the
 * attributes covered (default Value), typed `bounds` on written values and `arguments` bounds of
 * called methods (docs/policy.md, "OPC UA nodes").
 */
