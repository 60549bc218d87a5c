// The simulator's small HTTP JSON API (`plantgate sim --api-port`): points, faults, the
// served-request log, the clock in step mode. For humans with curl and for harnesses in other
// languages. Every bad request gets a 4xx JSON error naming the field; nothing here can crash the
// plant. Plain node:http on loopback by default; not an attack surface meant for a plant network.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { z } from 'zod';
import { FaultSpecError, fieldPath } from './faults.js';
import type { SimHandle } from './modbus-server.js';
import { UnknownPointError, type PlantSnapshot } from './runtime.js';

const MAX_BODY = 64 * 1024;
/** Snapshots kept per API (each is the plant's whole memory); the oldest goes first. */
const MAX_SNAPSHOTS = 32;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly field: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

const PointWrite = z.strictObject({ value: z.union([z.number().finite(), z.string().max(246)]) });
/**
 * One step runs every 100 ms tick of it while the API (and the Modbus listener) waits: an hour is
 * a fraction of a second on a busy plant, a day several seconds. Longer spans are several steps.
 */
export const MAX_API_STEP_MS = 3_600_000;
const ClockStep = z.strictObject({
  ms: z.number().int().min(1).max(MAX_API_STEP_MS, `at most ${MAX_API_STEP_MS} ms (one hour) per step; step again for more`),
});

function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue.code === 'unrecognized_keys' ? fieldPath([...issue.path, issue.keys[0]]) : fieldPath(issue.path);
  throw new ApiError(400, 'INVALID_FIELD', field, issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message);
}

function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const type = req.headers['content-type'] ?? '';
    if (!/^application\/json\b/i.test(type)) {
      reject(new ApiError(415, 'UNSUPPORTED_MEDIA_TYPE', 'content-type', 'send application/json'));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new ApiError(413, 'BODY_TOO_LARGE', '(body)', `body exceeds ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        reject(new ApiError(400, 'INVALID_JSON', '(body)', (err as Error).message));
      }
    });
  });
}

function intParam(url: URL, name: string, dflt: number, max: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return dflt;
  if (!/^[0-9]{1,15}$/.test(raw) || Number(raw) > max) throw new ApiError(400, 'INVALID_FIELD', name, `must be an integer 0..${max}`);
  return Number(raw);
}

export interface SimApiHandle {
  port: number;
  url: string;
  close(): Promise<void>;
}

/** What one API server keeps besides the simulator: snapshots taken over HTTP, by id. */
interface ApiState {
  snapshots: LRUCache<string, PlantSnapshot>;
}

type Route = (sim: SimHandle, req: http.IncomingMessage, url: URL, param: string | undefined, state: ApiState) => Promise<[number, unknown]> | [number, unknown];

const routes: { method: string; pattern: RegExp; handler: Route }[] = [
  {
    method: 'GET',
    pattern: /^\/api\/plant$/,
    handler: (sim) => [
      200,
      { plant: sim.plant.name, endpoints: sim.endpoints, clock: { now: sim.clock.now(), manual: sim.runtime.manual }, seed: sim.runtime.seed },
    ],
  },
  { method: 'GET', pattern: /^\/api\/points$/, handler: (sim) => [200, { points: sim.points() }] },
  {
    method: 'GET',
    pattern: /^\/api\/points\/(.+)$/,
    handler: (sim, _req, _url, id) => {
      const r = sim.runtime.resolve(id!);
      const point = sim.points().find((p) => p.plc === r.plc.id && p.name === r.point.name);
      return [200, point];
    },
  },
  {
    method: 'PUT',
    pattern: /^\/api\/points\/(.+)$/,
    handler: async (sim, req, _url, id) => {
      const body = parseBody(PointWrite, await readJson(req));
      sim.runtime.resolve(id!);
      sim.write(id!, body.value);
      return [200, { id, value: sim.read(id!) }];
    },
  },
  { method: 'GET', pattern: /^\/api\/faults$/, handler: (sim) => [200, { faults: sim.faults() }] },
  {
    method: 'POST',
    pattern: /^\/api\/faults$/,
    handler: async (sim, req) => [201, { fault: sim.inject((await readJson(req)) as never) }],
  },
  { method: 'DELETE', pattern: /^\/api\/faults$/, handler: (sim) => [200, { cleared: sim.clearFaults() }] },
  {
    method: 'DELETE',
    pattern: /^\/api\/faults\/([^/]+)$/,
    handler: (sim, _req, _url, id) => {
      if (!sim.clearFault(id!)) throw new ApiError(404, 'NO_SUCH_FAULT', 'id', `no active fault ${id}`);
      return [200, { cleared: 1 }];
    },
  },
  { method: 'POST', pattern: /^\/api\/connections\/drop$/, handler: (sim) => [200, { dropped: sim.dropConnections() }] },
  {
    method: 'GET',
    pattern: /^\/api\/requests$/,
    handler: (sim, _req, url) => {
      if (url.searchParams.has('tail')) {
        if (url.searchParams.has('after')) throw new ApiError(400, 'INVALID_FIELD', 'tail', 'give tail or after, not both');
        return [200, { total: sim.requestCount(), entries: sim.tail(intParam(url, 'tail', 0, 10_000)) }];
      }
      const after = intParam(url, 'after', 0, Number.MAX_SAFE_INTEGER);
      const limit = intParam(url, 'limit', 1000, 10_000);
      const entries = sim.served(after).slice(0, limit);
      return [200, { total: sim.requestCount(), entries }];
    },
  },
  { method: 'GET', pattern: /^\/api\/connections$/, handler: (sim) => [200, sim.connections()] },
  {
    method: 'POST',
    pattern: /^\/api\/modbus\/stop$/,
    handler: async (sim) => {
      await sim.stopModbus();
      return [200, { listening: false }];
    },
  },
  {
    method: 'POST',
    pattern: /^\/api\/modbus\/start$/,
    handler: async (sim) => {
      try {
        await sim.startModbus();
      } catch (err) {
        throw new ApiError(409, 'CANNOT_LISTEN', 'port', (err as Error).message);
      }
      return [200, { listening: true, port: sim.port }];
    },
  },
  {
    method: 'POST',
    pattern: /^\/api\/reset$/,
    handler: (sim) => {
      sim.reset();
      return [200, { reset: true }];
    },
  },
  {
    method: 'POST',
    pattern: /^\/api\/snapshots$/,
    handler: (sim, _req, _url, _param, state) => {
      const id = randomUUID();
      state.snapshots.set(id, sim.snapshot());
      return [201, { id, kept: MAX_SNAPSHOTS }];
    },
  },
  {
    method: 'POST',
    pattern: /^\/api\/snapshots\/([^/]+)\/restore$/,
    handler: (sim, _req, _url, id, state) => {
      const snapshot = state.snapshots.get(id!);
      if (snapshot === undefined) throw new ApiError(404, 'NO_SUCH_SNAPSHOT', 'id', `no snapshot ${id} (the API keeps the last ${MAX_SNAPSHOTS})`);
      sim.restore(snapshot);
      return [200, { restored: id }];
    },
  },
  {
    method: 'POST',
    pattern: /^\/api\/clock\/step$/,
    handler: async (sim, req) => {
      const body = parseBody(ClockStep, await readJson(req));
      if (!sim.runtime.manual) throw new ApiError(409, 'CLOCK_NOT_MANUAL', 'ms', 'the plant runs on a real clock; start it with --step to step it');
      sim.step(body.ms);
      return [200, { now: sim.clock.now() }];
    },
  },
];

async function dispatch(sim: SimHandle, req: http.IncomingMessage, state: ApiState): Promise<[number, unknown]> {
  const url = new URL(req.url ?? '/', 'http://sim');
  let pathMatched = false;
  for (const r of routes) {
    const m = r.pattern.exec(url.pathname);
    if (m === null) continue;
    pathMatched = true;
    if (r.method !== req.method) continue;
    let param: string | undefined;
    if (m[1] !== undefined) {
      try {
        param = decodeURIComponent(m[1]);
      } catch {
        throw new ApiError(400, 'INVALID_FIELD', 'path', 'bad percent-encoding');
      }
    }
    return r.handler(sim, req, url, param, state);
  }
  if (pathMatched) throw new ApiError(405, 'METHOD_NOT_ALLOWED', 'method', `${req.method} is not allowed on ${url.pathname}`);
  throw new ApiError(404, 'NOT_FOUND', 'path', `no such resource ${url.pathname}`);
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof FaultSpecError) return new ApiError(400, 'INVALID_FIELD', err.field, err.message);
  if (err instanceof UnknownPointError) return new ApiError(404, 'NO_SUCH_POINT', 'point', err.message);
  if (err instanceof Error && 'reason' in err && (err.reason === 'VALUE_OUT_OF_BOUNDS' || err.reason === 'TYPE_MISMATCH')) return new ApiError(400, err.reason, 'value', err.message);
  return new ApiError(500, 'INTERNAL', undefined, (err as Error).message ?? 'internal error');
}

/** Serves the HTTP API for a running simulator. */
export async function startSimApi(sim: SimHandle, opts: { host?: string; port?: number } = {}): Promise<SimApiHandle> {
  const state: ApiState = { snapshots: new LRUCache({ max: MAX_SNAPSHOTS }) };
  const server = http.createServer((req, res) => {
    dispatch(sim, req, state).then(
      ([status, body]) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      },
      (err: unknown) => {
        const e = toApiError(err);
        if (res.headersSent) return;
        res.writeHead(e.status, { 'content-type': 'application/json', connection: e.status === 413 ? 'close' : 'keep-alive' });
        res.end(JSON.stringify({ error: { code: e.code, field: e.field, message: e.message } }));
      },
    );
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://${host}:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
