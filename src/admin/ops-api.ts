// The operations endpoints a plant's monitoring scrapes: /healthz (the process answers),
// /readyz (ready only when a valid bundle is loaded, the audit spool accepts records and the
// listeners are up) and /metrics (Prometheus). Unauthenticated by design: they reveal no secret
// and no per-agent detail; bind them to a management interface.
import http from 'node:http';

export interface Readiness {
  ready: boolean;
  checks: Record<string, boolean>;
}

export interface OpsApiDeps {
  readiness(): Readiness;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export async function startOpsApi(opts: { host: string; port: number }, deps: OpsApiDeps): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.method !== 'GET') return send(405, 'application/json', JSON.stringify({ error: 'only GET' }));
    switch (req.url) {
      case '/healthz':
        return send(200, 'application/json', '{"status":"ok"}');
      case '/readyz': {
        const r = deps.readiness();
        return send(r.ready ? 200 : 503, 'application/json', JSON.stringify({ status: r.ready ? 'ready' : 'not ready', checks: r.checks }));
      }
      case '/metrics':
        deps.metrics().then(
          (m) => send(200, m.contentType, m.body),
          (err: unknown) => send(500, 'application/json', JSON.stringify({ error: (err as Error).message })),
        );
        return;
      default:
        return send(404, 'application/json', '{"error":"not found"}');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
