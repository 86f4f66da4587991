import Fastify from 'fastify';
import type { Logger } from 'pino';
import { AgentClosedError, InvalidHeaderError, NotFoundError, UnauthorizedError } from '../shared/errors.js';
import { httpError } from '../shared/http-errors.js';
import { parseIfMatch } from '../shared/if-match.js';
import type { AppliedChange } from './types.js';
import { createAgentMetrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import type { EvictedDocument } from './store/replica.js';
import type { Rejection } from './store/rejections.js';
import type { JsonValue } from '../shared/values.js';
import type { Agent, ReadOptions, WriteOptions } from './agent.js';
import type { Durability } from './durability.js';
import { bearerMatches } from '../shared/bearer.js';

interface DocParams {
  collection: string;
  key: string;
}

interface WriteQuery {
  durability?: string;
  timeoutMs?: string;
}
interface ReadQuery {
  confirmed?: string;
  minLsn?: string;
  timeoutMs?: string;
}

/**
 * `If-Match: 7` (or `"7"`) makes the write conditional on version 7; `?durability=hub` or
 * `?durability=replicas:2` waits for the hub (`&timeoutMs=` bounds the wait).
 */
function writeOptions(headers: Record<string, string | string[] | undefined>, query: WriteQuery): WriteOptions {
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

function readOptions(query: ReadQuery): ReadOptions {
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

export async function createAgentHttp(agent: Agent, log: Logger, options: AgentHttpOptions = {}) {
  // Per-request lines only at debug: a device's SD card should not log every read.
  const level = log.level === 'debug' || log.level === 'trace' ? log.level : 'warn';
  const routes: string[] = [];
  const app = Fastify({
    loggerInstance: log.child({ component: 'http' }, { level }),
    bodyLimit: 1024 * 1024,
  });

  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push(`${method} ${route.url}`);
  });

  app.setErrorHandler((error, _request, reply) => {
    const { status, body } = httpError(error);
    if (status >= 500) log.error({ err: error }, 'request failed');
    return reply.code(status).send(body);
  });

  app.put<{ Params: DocParams; Body: JsonValue; Querystring: WriteQuery }>('/v1/docs/:collection/:key', async (request) => {
    const { collection, key } = request.params;
    return agent.put(collection, key, request.body, writeOptions(request.headers, request.query));
  });

  app.patch<{ Params: DocParams; Body: { [field: string]: JsonValue }; Querystring: WriteQuery }>(
    '/v1/docs/:collection/:key',
    async (request) => {
      const { collection, key } = request.params;
      return agent.patch(collection, key, request.body, writeOptions(request.headers, request.query));
    },
  );

  app.delete<{ Params: DocParams; Querystring: WriteQuery }>('/v1/docs/:collection/:key', async (request) => {
    const { collection, key } = request.params;
    return agent.del(collection, key, writeOptions(request.headers, request.query));
  });

  app.get<{ Params: DocParams; Querystring: ReadQuery }>('/v1/docs/:collection/:key', async (request) => {
    const { collection, key } = request.params;
    const doc = await agent.get(collection, key, readOptions(request.query));
    if (!doc) throw new NotFoundError(`no document ${collection}/${key} on this device`);
    return doc;
  });

  app.get<{ Params: { collection: string }; Querystring: ReadQuery & { prefix?: string; after?: string; limit?: string } }>(
    '/v1/docs/:collection',
    async (request) => {
      const { prefix, after, limit } = request.query;
      const docs = await agent.list(request.params.collection, {
        ...readOptions(request.query),
        ...(prefix !== undefined && { prefix }),
        ...(after !== undefined && { after }),
        ...(limit !== undefined && { limit: Number(limit) || 100 }),
      });
      return { docs };
    },
  );

  app.get('/v1/status', async () => agent.status());

  /** Sync now: connect if needed, upload, catch up. 200 when done, 202 if still going after `timeoutMs`. */
  app.post<{ Querystring: { timeoutMs?: string } }>('/v1/sync', async (request, reply) => {
    const timeoutMs = request.query.timeoutMs !== undefined ? positiveInteger('timeoutMs', request.query.timeoutMs) : 30_000;
    const done = await agent.syncNow(timeoutMs);
    return reply.code(done ? 200 : 202).send({ done, status: agent.status() });
  });

  app.get<{ Querystring: { limit?: string } }>('/v1/rejections', async (request) => ({
    rejections: agent.rejections(Number(request.query.limit) || 100),
  }));

  app.addHook('onRequest', async (request) => {
    if (options.token !== undefined && !bearerMatches(request.headers.authorization, options.token)) {
      throw new UnauthorizedError();
    }
    if (agent.closed) throw new AgentClosedError();
  });

  const metrics = createAgentMetrics(agent);
  app.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await metrics.scrape();
    return reply.type(contentType).send(body);
  });

  app.get('/v1/openapi.json', async () => openApiDocument);

  /** Server-Sent Events: every committed change applied here (optionally of one collection), rejections, and documents evicted from the scope. */
  app.get<{ Querystring: { collection?: string } }>('/v1/changes', (request, reply) => {
    const only = request.query.collection;
    reply.hijack();
    const out = reply.raw;
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
    request.raw.on('close', () => {
      clearInterval(heartbeat);
      agent.off('change', onChange);
      agent.off('rejection', onRejection);
      agent.off('evicted', onEvicted);
    });
  });

  await app.ready();
  servedRoutes.set(app, routes);
  return app;
}

/** `METHOD /path` of every route an agent API serves, so tests can hold the OpenAPI description to it. */
export const servedRoutes = new WeakMap<object, readonly string[]>();
