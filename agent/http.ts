import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { AgentClosedError, InvalidHeaderError, NotFoundError, UnauthorizedError } from '../shared/errors.js';
import { parseIfMatch } from '../shared/if-match.js';
import type { AppliedChange } from './types.js';
import { HttpServer, Reply, STREAMED } from './http-server.js';
import { blobRoutes } from './http-blobs.js';
import { createAgentMetrics } from './metrics.js';
import type { EvictedDocument } from './store/replica.js';
import type { Rejection } from './store/rejections.js';
import type { JsonValue } from '../shared/values.js';
import type { Agent, ReadOptions, WriteOptions } from './agent.js';
import type { Durability } from './durability.js';
import { bearerMatches } from '../shared/bearer.js';

type Query = Record<string, string | undefined>;

/**
 * `If-Match: 7` (or `"7"`) makes the write conditional on version 7; `?durability=hub` or
 * `?durability=replicas:2` waits for the hub (`&timeoutMs=` bounds the wait).
 */
function writeOptions(headers: Record<string, string | string[] | undefined>, query: Query): WriteOptions {
  const options: WriteOptions = {};
  const version = parseIfMatch(headers['if-match']);
  if (version !== undefined) options.ifVersion = version;
  if (query.durability !== undefined) options.durability = parseDurability(query.durability);
  if (query.timeoutMs !== undefined) options.timeoutMs = positiveInteger('timeoutMs', query.timeoutMs);
  return options;
}

function parseDurability(text: string): Durability {
  if (text === 'local' || text === 'hub') return text;
  const replicas = /^replicas:(\d{1,4})$/.exec(text);
  if (replicas && Number(replicas[1]) >= 1) return { replicas: Number(replicas[1]) };
  throw new InvalidHeaderError('durability', 'expected local, hub or replicas:N');
}

function positiveInteger(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new InvalidHeaderError(name, 'expected a non-negative integer');
  return n;
}

function readOptions(query: Query): ReadOptions {
  return {
    confirmed: query.confirmed === 'true',
    ...(query.minLsn !== undefined && { minLsn: positiveInteger('minLsn', query.minLsn) }),
    ...(query.timeoutMs !== undefined && { timeoutMs: positiveInteger('timeoutMs', query.timeoutMs) }),
  };
}

/**
 * The agent's localhost HTTP API, for apps in any language. JSON in and out; errors are
 * `{ code, message }` with a stable code.
 */
export interface AgentHttpOptions {
  /** Require `Authorization: Bearer <token>` on every request. */
  token?: string;
}

/** The device API of one agent: listen, close, and the node:http server under it. */
export interface AgentHttp {
  readonly server: Server;
  listen(address: { host: string; port: number }): Promise<void>;
  close(): Promise<void>;
}

export async function createAgentHttp(agent: Agent, log: Logger, options: AgentHttpOptions = {}): Promise<AgentHttp> {
  const app = new HttpServer({
    log: log.child({ component: 'http' }),
    bodyLimit: 1024 * 1024,
    guard: (headers) => {
      if (options.token !== undefined && !bearerMatches(headers.authorization, options.token)) throw new UnauthorizedError();
      if (agent.closed) throw new AgentClosedError();
    },
  });
  const doc = (params: Record<string, string>): [string, string] => [params.collection!, params.key!];

  app.route('PUT', '/v1/docs/:collection/:key', (request) =>
    agent.put(...doc(request.params), request.body as JsonValue, writeOptions(request.headers, request.query)),
  );

  app.route('PATCH', '/v1/docs/:collection/:key', (request) =>
    agent.patch(...doc(request.params), request.body as { [field: string]: JsonValue }, writeOptions(request.headers, request.query)),
  );

  app.route('DELETE', '/v1/docs/:collection/:key', (request) =>
    agent.del(...doc(request.params), writeOptions(request.headers, request.query)),
  );

  app.route('GET', '/v1/docs/:collection/:key', async (request) => {
    const [collection, key] = doc(request.params);
    const found = await agent.get(collection, key, readOptions(request.query));
    if (!found) throw new NotFoundError(`no document ${collection}/${key} on this device`);
    return found;
  });

  app.route('GET', '/v1/docs/:collection', async (request) => {
    const { prefix, after, limit } = request.query;
    const docs = await agent.list(request.params.collection!, {
      ...readOptions(request.query),
      ...(prefix !== undefined && { prefix }),
      ...(after !== undefined && { after }),
      ...(limit !== undefined && { limit: Number(limit) || 100 }),
    });
    return { docs };
  });

  app.route('GET', '/v1/status', () => agent.status());

  /** Sync now: connect if needed, upload, catch up. 200 when done, 202 if still going after `timeoutMs`. */
  app.route('POST', '/v1/sync', async (request) => {
    const timeoutMs = request.query.timeoutMs !== undefined ? positiveInteger('timeoutMs', request.query.timeoutMs) : 30_000;
    const done = await agent.syncNow(timeoutMs);
    return new Reply(done ? 200 : 202, { done, status: agent.status() });
  });

  app.route('GET', '/v1/rejections', (request) => ({ rejections: agent.rejections(Number(request.query.limit) || 100) }));

  const metrics = createAgentMetrics(agent);
  app.route('GET', '/metrics', async () => {
    const { contentType, body } = await metrics.scrape();
    return new Reply(200, body, contentType);
  });

  // Loaded when asked for: a client reads it once, if ever, and the agent need not hold it.
  app.route('GET', '/v1/openapi.json', async () => (await import('./openapi.js')).openApiDocument);

  /** Server-Sent Events: every committed change applied here (optionally of one collection), rejections, and documents evicted from the scope. */
  app.route('GET', '/v1/changes', (request) => {
    const only = request.query.collection;
    const out = request.response;
    out.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    out.write(': outpost change feed\n\n');
    const onChange = (changes: AppliedChange[]): void => {
      for (const c of changes) if (only === undefined || c.c === only) out.write(`event: change\ndata: ${JSON.stringify(c)}\n\n`);
    };
    const onRejection = (rejections: Rejection[]): void => {
      for (const r of rejections)
        if (only === undefined || r.collection === only) out.write(`event: rejection\ndata: ${JSON.stringify(r)}\n\n`);
    };
    const onEvicted = (documents: EvictedDocument[]): void => {
      for (const d of documents)
        if (only === undefined || d.collection === only) out.write(`event: evicted\ndata: ${JSON.stringify(d)}\n\n`);
    };
    const heartbeat = setInterval(() => out.write(': keep-alive\n\n'), 15_000);
    agent.on('change', onChange);
    agent.on('rejection', onRejection);
    agent.on('evicted', onEvicted);
    // The response's close, not the request's: it comes when the client goes, however the request was read.
    out.once('close', () => {
      clearInterval(heartbeat);
      agent.off('change', onChange);
      agent.off('rejection', onRejection);
      agent.off('evicted', onEvicted);
    });
    return STREAMED;
  });

  blobRoutes(app, agent);

  servedRoutes.set(app, app.routes);
  return app;
}

/** `METHOD /path` of every route an agent API serves, so tests can hold the OpenAPI description to it. */
export const servedRoutes = new WeakMap<object, readonly string[]>();
