// The one NodeId form policy, the OPC UA front and the upstream share: `nsu=<namespace URI>;<identifier>`.
// Namespace indexes (`ns=2;`) differ between servers and across restarts, so they never appear in a
// bundle or a Command. Pure string work, no node-opcua: the compiler runs without it. Part of the
// asset format (asset definitions name their nodes), so policy and the OPC UA front both read it here.

const IDENTIFIER_RE = /^(?:i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=[A-Za-z0-9+/=]+)$/s;

/**
 * Why `nodeId` cannot name a node of `namespace`, or null. Accepted: `nsu=<namespace>;<identifier>`
 * (same URI) and a bare identifier (`s=Tank1.Level`, `i=1001`) read in that namespace.
 */
export function nodeIdProblem(namespace: string, nodeId: string): string | null {
  return split(namespace, nodeId).problem;
}

/** The canonical form of a point's NodeId; throws Error with nodeIdProblem's text when unusable. */
export function expandNodeId(namespace: string, nodeId: string): string {
  const r = split(namespace, nodeId);
  if (r.problem !== null) throw new Error(r.problem);
  return `nsu=${namespace};${r.identifier}`;
}

/** The identifier part of a canonical NodeId (`nsu=<uri>;s=x` → `s=x`), or undefined. */
export function identifierOf(nodeId: string): string | undefined {
  if (!nodeId.startsWith('nsu=')) return undefined;
  const semi = nodeId.indexOf(';', 4);
  return semi < 0 ? undefined : nodeId.slice(semi + 1);
}

function split(namespace: string, nodeId: string): { identifier: string; problem: string | null } {
  let identifier = nodeId;
  if (nodeId.startsWith('nsu=')) {
    const semi = nodeId.indexOf(';', 4);
    const uri = semi < 0 ? '' : nodeId.slice(4, semi);
    if (uri !== namespace) return { identifier, problem: `NodeId '${nodeId}' names namespace '${uri}', not the asset's '${namespace}'` };
    identifier = nodeId.slice(semi + 1);
  } else if (nodeId.startsWith('ns=')) {
    const semi = nodeId.indexOf(';');
    return {
      identifier,
      problem: `NodeId '${nodeId}' uses a namespace index (indexes differ between servers); write it as 'nsu=${namespace};${semi < 0 ? '…' : nodeId.slice(semi + 1)}' or as the bare identifier`,
    };
  }
  if (!IDENTIFIER_RE.test(identifier)) return { identifier, problem: `NodeId '${nodeId}': '${identifier}' is not an OPC UA identifier (i=, s=, g= or b=)` };
  return { identifier, problem: null };
}
