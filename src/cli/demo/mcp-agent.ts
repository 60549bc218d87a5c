// An MCP agent for the demo, the tests and the bench: the official MCP SDK's client over
// Streamable HTTP with TLS, presenting a bearer token, and the agent's certificate when asked
// (RFC 8705 certificate-bound tokens). Node's own fetch cannot take a CA or a client certificate,
// so requests go through undici's fetch with an Agent that carries them.
import { Client, StreamableHTTPClientTransport, type AuthProvider } from '@modelcontextprotocol/client';
import { Agent, fetch as undiciFetch } from 'undici';

export interface McpAgentOptions {
  /** The gateway's MCP resource URL (https://host:port/mcp). */
  url: string;
  ca: Buffer;
  /** The bearer token; a function is asked before every request (token refresh). */
  token?: string | (() => string);
  /**
   * Instead of `token`: the SDK's own token seam, asked before every request and told of a 401
   * (a client that discovers where its tokens come from: docs/mcp.md, Connecting a client).
   */
  authProvider?: AuthProvider;
  /** Client certificate and key, for mutual TLS. */
  cert?: Buffer;
  key?: Buffer;
  /** Protocol era: `legacy` (2025 revisions, an MCP session) or `modern` (2026-07-28, stateless). */
  era?: 'legacy' | 'modern';
  name?: string;
  version?: string;
  /** Called when the server says the tool list changed. */
  onToolsChanged?: () => void;
  /** Extra request headers (tests: Origin). */
  headers?: Record<string, string>;
}

export interface McpAgent {
  client: Client;
  /**
   * Resolves once the server's notification stream to this client is open (2025 revisions: the
   * GET event stream the SDK opens after initialize; 2026-07-28: the listen stream, open once
   * connected): from then on no list_changed can be missed.
   */
  notifications: Promise<void>;
  /** The fetch the transport uses (TLS options applied), for raw HTTP checks. */
  fetch: typeof fetch;
  close(): Promise<void>;
}

/** A fetch over TLS with the plant CA (and a client certificate when given), and the bearer token. */
export function tlsFetch(
  o: Pick<McpAgentOptions, 'ca' | 'cert' | 'key' | 'token' | 'headers'>,
  onEventStream?: () => void,
): { fetch: typeof fetch; dispatcher: Agent } {
  const dispatcher = new Agent({ connect: { ca: o.ca, ...(o.cert && o.key ? { cert: o.cert, key: o.key } : {}) } });
  const f = ((input: string | URL | Request, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    for (const [k, v] of Object.entries(o.headers ?? {})) headers.set(k, v);
    const token = typeof o.token === 'function' ? o.token() : o.token;
    if (token !== undefined) headers.set('authorization', `Bearer ${token}`);
    const answer = undiciFetch(input as never, { ...(init as object), headers, dispatcher } as never);
    if (onEventStream !== undefined && (init.method ?? 'GET') === 'GET') {
      void answer.then((r) => {
        if (r.ok && (r.headers.get('content-type') ?? '').startsWith('text/event-stream')) onEventStream();
      }, () => undefined);
    }
    return answer;
  }) as unknown as typeof fetch;
  return { fetch: f, dispatcher };
}

export async function connectMcpAgent(o: McpAgentOptions): Promise<McpAgent> {
  let streamOpen!: () => void;
  const notifications = new Promise<void>((resolve) => (streamOpen = resolve));
  const { fetch: f, dispatcher } = tlsFetch(o, () => streamOpen());
  const client = new Client(
    { name: o.name ?? 'plantgate-demo-agent', version: o.version ?? '0.1.0' },
    {
      versionNegotiation: { mode: o.era === 'modern' ? { pin: '2026-07-28' } : 'legacy' },
      ...(o.onToolsChanged ? { listChanged: { tools: { onChanged: () => o.onToolsChanged!(), autoRefresh: false } } } : {}),
    },
  );
  const transport = new StreamableHTTPClientTransport(new URL(o.url), { fetch: f, ...(o.authProvider ? { authProvider: o.authProvider } : {}) });
  try {
    await client.connect(transport);
  } catch (err) {
    await dispatcher.close();
    throw err;
  }
  if (o.era === 'modern') streamOpen();
  return {
    client,
    notifications,
    fetch: f,
    close: async () => {
      await client.close().catch(() => undefined);
      await dispatcher.destroy().catch(() => undefined);
    },
  };
}
