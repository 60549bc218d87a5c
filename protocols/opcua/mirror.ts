// What the gateway knows of an OPC UA server's model (issue 21, docs/opcua.md "Fronting a
// third-party OPC UA server"): the nodes under the configured roots, browsed on the gateway's own
// upstream session, with what an agent needs to use them as on the server itself — NodeIds and
// browse names in their namespaces (by URI, never by index), display names and descriptions,
// data types, value ranks and array dimensions, access levels and write masks, properties (EURange,
// EngineeringUnits, …) with their values, and methods with their argument definitions.
// Owns the model (MirrorNode) and reading it from a server; never decides anything and never
// writes to the server. Bounded: at most `maxNodes` nodes, at most MAX_DEPTH levels deep.
import {
  AttributeIds,
  BrowseDirection,
  DataValue,
  LocalizedText,
  NodeClass,
  NodeId,
  StatusCodes,
  browseAll,
  type Argument,
  type BrowseDescriptionOptions,
  type ClientSession,
  type ReadValueIdOptions,
  type ReferenceDescription,
} from 'node-opcua';

export type MirrorNodeClass = 'Object' | 'Variable' | 'Method';

/** Reference types from a parent (ns=0 numeric ids, OPC 10000-3 §7): what the front re-creates. */
export const REF = { Organizes: 35, HasComponent: 47, HasProperty: 46, HasOrderedComponent: 49 } as const;
/** Type definitions used when the server's own is not a standard (ns=0) one. */
const BASE_OBJECT_TYPE = 58;
const BASE_DATA_VARIABLE_TYPE = 63;
const PROPERTY_TYPE = 68;
const OBJECTS_FOLDER = 85;
const HIERARCHICAL_REFERENCES = 33;
const MAX_DEPTH = 32;
/** ReadValueIds per Read request while mirroring (servers bound MaxNodesPerRead; 1000 is common). */
const READ_CHUNK = 500;
const BROWSE_CHUNK = 100;

export interface MirrorNode {
  /** Canonical NodeId `nsu=<namespace URI>;<identifier>`: the Command target. */
  nodeId: string;
  namespaceUri: string;
  /** `s=Line1.Speed`, `i=1001`, … */
  identifier: string;
  nodeClass: MirrorNodeClass;
  browseName: { namespaceUri: string; name: string };
  displayName: LocalizedText;
  description?: LocalizedText;
  /** The parent's canonical NodeId; absent: the node hangs from the Objects folder. */
  parent?: string;
  /** The reference from the parent (ns=0 numeric id; REF). */
  referenceType: number;
  /** ns=0 numeric id of the type definition (objects and variables). */
  typeDefinition?: number;
  /** Browse names from the Objects folder, '/'-joined: `/Line1/Speed`. */
  browsePath: string;
  writeMask: number;
  // Variables
  /** ns=0 numeric id of the DataType (a built-in type, or a standard type such as UtcTime). */
  dataType?: number;
  valueRank?: number;
  arrayDimensions?: number[];
  accessLevel?: number;
  minimumSamplingInterval?: number;
  historizing?: boolean;
  /** A property (HasProperty): its value is part of the model, copied once, never subscribed. */
  property?: boolean;
  /** The value read while mirroring (properties: for good; other variables: until the first notification). */
  value?: DataValue;
  // Methods
  inputArguments?: Argument[];
  outputArguments?: Argument[];
}

/** A node under the roots the gateway does not mirror, and why (logged, never silently dropped). */
export interface Unmirrored {
  nodeId: string;
  browsePath: string;
  why: string;
}

export interface MirrorOptions {
  /**
   * Where to start: browse paths from the Objects folder (`/Line1`) or canonical NodeIds
   * (`nsu=urn:acme:plc:line1;s=Line1`); `/` is every non-standard node under Objects.
   */
  roots: string[];
  maxNodes: number;
}

export interface MirrorModel {
  /** The server's namespace array (index order), to keep indexes where the front can. */
  namespaceArray: string[];
  nodes: MirrorNode[];
  unmirrored: Unmirrored[];
}

export class MirrorError extends Error {
  override readonly name = 'MirrorError';
}

/** The identifier part of a NodeId as OPC UA's text form writes it (`s=…`, `i=…`, `g=…`, `b=…`). */
export function identifierText(id: NodeId): string {
  switch (id.identifierType) {
    case NodeId.NodeIdType.NUMERIC:
      return `i=${String(id.value)}`;
    case NodeId.NodeIdType.STRING:
      return `s=${String(id.value)}`;
    case NodeId.NodeIdType.GUID:
      return `g=${String(id.value)}`;
    default:
      return `b=${(id.value as Buffer).toString('base64')}`;
  }
}

/** Splits `nsu=<uri>;<identifier>` (canonical form); undefined when it is not one. */
export function splitCanonical(nodeId: string): { uri: string; identifier: string } | undefined {
  if (!nodeId.startsWith('nsu=')) return undefined;
  const semi = nodeId.indexOf(';', 4);
  return semi < 0 ? undefined : { uri: nodeId.slice(4, semi), identifier: nodeId.slice(semi + 1) };
}

interface Found {
  id: NodeId;
  canonical: string;
  nodeClass: MirrorNodeClass;
  browseName: { namespaceUri: string; name: string };
  displayName: LocalizedText;
  parent?: string;
  referenceType: number;
  typeDefinition?: number;
  browsePath: string;
  depth: number;
}

const NODE_CLASS: Partial<Record<NodeClass, MirrorNodeClass>> = {
  [NodeClass.Object]: 'Object',
  [NodeClass.Variable]: 'Variable',
  [NodeClass.Method]: 'Method',
};

function hierarchicalChildren(ids: NodeId[]): BrowseDescriptionOptions[] {
  return ids.map((nodeId) => ({
    nodeId,
    browseDirection: BrowseDirection.Forward,
    referenceTypeId: HIERARCHICAL_REFERENCES,
    includeSubtypes: true,
    nodeClassMask: NodeClass.Object | NodeClass.Variable | NodeClass.Method,
    resultMask: 0x3f,
  }));
}

function ns0Numeric(id: { namespace: number; identifierType: number; value: unknown } | null | undefined): number | undefined {
  return id && id.namespace === 0 && id.identifierType === NodeId.NodeIdType.NUMERIC ? (id.value as number) : undefined;
}

/**
 * Browses and reads the model under `opts.roots` on an open session. A root that is not on the
 * server, and every node the front cannot reproduce, is listed in `unmirrored` (logged by the
 * caller); MirrorError only for a root that is ambiguous or malformed (a configuration mistake).
 */
export async function readModel(session: ClientSession, opts: MirrorOptions): Promise<MirrorModel> {
  const namespaceArray = (await session.readNamespaceArray()) as string[];
  const uriOf = (index: number): string | undefined => namespaceArray[index];
  const canonical = (id: NodeId): string | undefined => {
    const uri = uriOf(id.namespace);
    return uri === undefined ? undefined : `nsu=${uri};${identifierText(id)}`;
  };
  const found = new Map<string, Found>();
  const unmirrored: Unmirrored[] = [];
  const argumentNodes = new Map<string, { method: string; kind: 'in' | 'out' }>();
  const argumentIds: NodeId[] = [];

  const accept = (ref: ReferenceDescription, parent: Found | undefined, parentPath: string, depth: number): Found | undefined => {
    const nodeClass = NODE_CLASS[ref.nodeClass as NodeClass];
    const id = ref.nodeId as unknown as NodeId;
    if (nodeClass === undefined || (ref.nodeId as { serverIndex?: number }).serverIndex) return undefined;
    // Namespace 0 belongs to the OPC Foundation: standard nodes (Server, Aliases, …), never a PLC's.
    if (id.namespace === 0) return undefined;
    const c = canonical(id);
    const uri = uriOf(ref.browseName.namespaceIndex);
    const path = `${parentPath}/${ref.browseName.name ?? ''}`;
    if (c === undefined || uri === undefined) {
      unmirrored.push({ nodeId: id.toString(), browsePath: path, why: 'namespace index outside the server namespace array' });
      return undefined;
    }
    if (found.has(c)) return undefined; // reached twice (a node with two parents): mirrored once, under the first
    if (found.size >= opts.maxNodes) {
      unmirrored.push({ nodeId: c, browsePath: path, why: `more than max_nodes (${opts.maxNodes}) nodes under the roots` });
      return undefined;
    }
    const f: Found = {
      id,
      canonical: c,
      nodeClass,
      browseName: { namespaceUri: uri, name: ref.browseName.name ?? '' },
      displayName: ref.displayName,
      referenceType: ns0Numeric(ref.referenceTypeId) ?? REF.HasComponent,
      browsePath: path,
      depth,
    };
    if (parent !== undefined) f.parent = parent.canonical;
    const td = ns0Numeric(ref.typeDefinition as unknown as NodeId);
    if (nodeClass !== 'Method') f.typeDefinition = td ?? (nodeClass === 'Object' ? BASE_OBJECT_TYPE : f.referenceType === REF.HasProperty ? PROPERTY_TYPE : BASE_DATA_VARIABLE_TYPE);
    found.set(c, f);
    return f;
  };

  // Roots: every non-standard child of Objects, or the nodes the configuration names.
  let level: Found[] = [];
  const objectsChildren = async (): Promise<ReferenceDescription[]> => (await browseAll(session, hierarchicalChildren([new NodeId(NodeId.NodeIdType.NUMERIC, OBJECTS_FOLDER, 0)])))[0]?.references ?? [];
  for (const root of opts.roots) {
    if (root === '/') {
      for (const ref of await objectsChildren()) {
        const f = accept(ref, undefined, '', 0);
        if (f !== undefined) level.push(f);
      }
      continue;
    }
    const f = root.startsWith('/') ? await rootByPath(session, root, accept, objectsChildren) : await rootByNodeId(session, root, namespaceArray, accept, canonical);
    // Not there (yet): a model change may bring it; until then it is reported, not fatal.
    if (f === undefined) unmirrored.push({ nodeId: root, browsePath: root.startsWith('/') ? root : '', why: 'browse root is not on the server' });
    else level.push(f);
  }

  // Breadth first, one Browse per BROWSE_CHUNK nodes of a level (continuation points followed).
  while (level.length > 0) {
    const next: Found[] = [];
    for (let i = 0; i < level.length; i += BROWSE_CHUNK) {
      const chunk = level.slice(i, i + BROWSE_CHUNK);
      const results = await browseAll(session, hierarchicalChildren(chunk.map((f) => f.id)));
      chunk.forEach((parent, k) => {
        for (const ref of results[k]?.references ?? []) {
          // A method's argument definitions are part of the method, not nodes of their own.
          if (parent.nodeClass === 'Method') {
            const name = ref.browseName.name;
            if (ref.browseName.namespaceIndex === 0 && (name === 'InputArguments' || name === 'OutputArguments')) {
              argumentNodes.set((ref.nodeId as unknown as NodeId).toString(), { method: parent.canonical, kind: name === 'InputArguments' ? 'in' : 'out' });
              argumentIds.push(ref.nodeId as unknown as NodeId);
            }
            continue;
          }
          if (parent.depth + 1 > MAX_DEPTH) {
            unmirrored.push({ nodeId: String(ref.nodeId), browsePath: `${parent.browsePath}/${ref.browseName.name ?? ''}`, why: `deeper than ${MAX_DEPTH} levels` });
            continue;
          }
          const f = accept(ref, parent, parent.browsePath, parent.depth + 1);
          if (f !== undefined) next.push(f);
        }
      });
    }
    level = next;
  }

  const nodes = await readAttributes(session, [...found.values()], unmirrored);
  // Argument definitions (Argument[] values of the methods' InputArguments / OutputArguments).
  const byId = new Map(nodes.map((n) => [n.nodeId, n]));
  const args = await readChunked(session, argumentIds.map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })));
  argumentIds.forEach((id, k) => {
    const a = argumentNodes.get(id.toString())!;
    const method = byId.get(a.method);
    const v = args[k];
    if (method === undefined || v === undefined || !v.statusCode.isGood()) return;
    const list = (Array.isArray(v.value.value) ? v.value.value : []) as Argument[];
    if (a.kind === 'in') method.inputArguments = list;
    else method.outputArguments = list;
  });
  for (const n of nodes) {
    if (n.nodeClass !== 'Method') continue;
    n.inputArguments ??= [];
    n.outputArguments ??= [];
  }
  return { namespaceArray, nodes, unmirrored };
}

async function rootByPath(
  session: ClientSession,
  root: string,
  accept: (ref: ReferenceDescription, parent: Found | undefined, parentPath: string, depth: number) => Found | undefined,
  objectsChildren: () => Promise<ReferenceDescription[]>,
): Promise<Found | undefined> {
  const names = root.split('/').filter((s) => s !== '');
  let refs = await objectsChildren();
  let parentPath = '';
  for (let i = 0; i < names.length; i++) {
    const matches = refs.filter((r) => r.browseName.name === names[i] && (r.nodeId as unknown as NodeId).namespace !== 0);
    if (matches.length !== 1) {
      if (matches.length > 1) throw new MirrorError(`browse root '${root}': '${names[i]}' names ${matches.length} nodes; give the root as a NodeId`);
      return undefined;
    }
    const ref = matches[0]!;
    if (i === names.length - 1) return accept(ref, undefined, parentPath, 0);
    parentPath += `/${names[i]}`;
    refs = (await browseAll(session, hierarchicalChildren([ref.nodeId as unknown as NodeId])))[0]?.references ?? [];
  }
  return undefined;
}

/** A root given by NodeId: its browse path is found by walking its parents up to Objects. */
async function rootByNodeId(
  session: ClientSession,
  root: string,
  namespaceArray: string[],
  accept: (ref: ReferenceDescription, parent: Found | undefined, parentPath: string, depth: number) => Found | undefined,
  canonical: (id: NodeId) => string | undefined,
): Promise<Found | undefined> {
  const parts = splitCanonical(root);
  if (parts === undefined) throw new MirrorError(`browse root '${root}' is neither a browse path (/Line1) nor a NodeId nsu=<namespace URI>;<identifier>`);
  const index = namespaceArray.indexOf(parts.uri);
  if (index < 0) return undefined;
  const id = NodeId.resolveNodeId(`ns=${index};${parts.identifier}`);
  // Walk up: each step the first hierarchical parent (inverse reference), until Objects.
  const names: string[] = [];
  let current = id;
  let self: ReferenceDescription | undefined;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const up = (await browseAll(session, [{ ...hierarchicalChildren([current])[0]!, browseDirection: BrowseDirection.Inverse, nodeClassMask: 0 }]))[0];
    const parentRef = up?.references?.[0];
    if (parentRef === undefined) return undefined;
    if (depth === 0) {
      // The node's own reference description, as its parent lists it.
      const siblings = (await browseAll(session, hierarchicalChildren([parentRef.nodeId as unknown as NodeId])))[0]?.references ?? [];
      self = siblings.find((r) => canonical(r.nodeId as unknown as NodeId) === root);
      if (self === undefined) return undefined;
    }
    const pid = parentRef.nodeId as unknown as NodeId;
    if (pid.namespace === 0 && pid.value === OBJECTS_FOLDER) break;
    names.unshift(parentRef.browseName.name ?? '');
    current = pid;
  }
  return self === undefined ? undefined : accept(self, undefined, names.length === 0 ? '' : `/${names.join('/')}`, 0);
}

async function readChunked(session: ClientSession, items: ReadValueIdOptions[]): Promise<DataValue[]> {
  const out: DataValue[] = [];
  for (let i = 0; i < items.length; i += READ_CHUNK) out.push(...(await session.read(items.slice(i, i + READ_CHUNK))));
  return out;
}

const VARIABLE_ATTRIBUTES = [
  AttributeIds.DataType,
  AttributeIds.ValueRank,
  AttributeIds.ArrayDimensions,
  AttributeIds.AccessLevel,
  AttributeIds.MinimumSamplingInterval,
  AttributeIds.Historizing,
  AttributeIds.Value,
] as const;

async function readAttributes(session: ClientSession, found: Found[], unmirrored: Unmirrored[]): Promise<MirrorNode[]> {
  const items: ReadValueIdOptions[] = [];
  for (const f of found) {
    items.push({ nodeId: f.id, attributeId: AttributeIds.Description }, { nodeId: f.id, attributeId: AttributeIds.WriteMask });
    if (f.nodeClass === 'Variable') for (const a of VARIABLE_ATTRIBUTES) items.push({ nodeId: f.id, attributeId: a });
  }
  const values = await readChunked(session, items);
  const nodes: MirrorNode[] = [];
  const dropped = new Set<string>();
  let k = 0;
  for (const f of found) {
    const description = values[k++];
    const writeMask = values[k++];
    const parts = splitCanonical(f.canonical)!;
    const n: MirrorNode = {
      nodeId: f.canonical,
      namespaceUri: parts.uri,
      identifier: parts.identifier,
      nodeClass: f.nodeClass,
      browseName: f.browseName,
      displayName: f.displayName,
      referenceType: f.referenceType,
      browsePath: f.browsePath,
      writeMask: good(writeMask) ? Number(writeMask!.value.value) : 0,
    };
    if (f.parent !== undefined) n.parent = f.parent;
    if (f.typeDefinition !== undefined) n.typeDefinition = f.typeDefinition;
    const text = good(description) ? (description!.value.value as LocalizedText | null) : null;
    if (text?.text) n.description = text;
    if (f.nodeClass === 'Variable') {
      const [dataType, valueRank, dims, access, sampling, historizing, value] = VARIABLE_ATTRIBUTES.map(() => values[k++]);
      const dt = good(dataType) ? ns0Numeric(dataType!.value.value as NodeId) : undefined;
      // A parent that is not mirrored takes its children with it.
      if (dt === undefined || (f.parent !== undefined && dropped.has(f.parent))) {
        const why = dt === undefined ? `data type ${String(dataType?.value.value ?? 'unreadable')} is the server's own (a structure or enumeration the gateway does not know)` : 'its parent is not mirrored';
        unmirrored.push({ nodeId: f.canonical, browsePath: f.browsePath, why });
        dropped.add(f.canonical);
        continue;
      }
      n.dataType = dt;
      n.valueRank = good(valueRank) ? Number(valueRank!.value.value) : -1;
      const d = good(dims) ? dims!.value.value : null;
      if (d !== null && d !== undefined && (d as ArrayLike<number>).length > 0) n.arrayDimensions = Array.from(d as ArrayLike<number>);
      n.accessLevel = good(access) ? Number(access!.value.value) : 1;
      n.minimumSamplingInterval = good(sampling) ? Number(sampling!.value.value) : -1;
      n.historizing = good(historizing) ? Boolean(historizing!.value.value) : false;
      if (f.referenceType === REF.HasProperty) n.property = true;
      if (value !== undefined) n.value = value;
    } else if (f.parent !== undefined && dropped.has(f.parent)) {
      unmirrored.push({ nodeId: f.canonical, browsePath: f.browsePath, why: 'its parent is not mirrored' });
      dropped.add(f.canonical);
      continue;
    }
    nodes.push(n);
  }
  return nodes;
}

function good(dv: DataValue | undefined): boolean {
  return dv !== undefined && dv.statusCode.isGood();
}
