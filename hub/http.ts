import Fastify from 'fastify';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { brokerAuthRoutes } from './broker-auth-http.js';
import { DASHBOARD_HTML } from './dashboard.js';
import type { HubApi } from './http-api.js';
import { bearerMatches } from '../shared/bearer.js';
import { parseIfMatch } from '../shared/if-match.js';
import { ErrorCode, NotFoundError, UnauthorizedError } from '../shared/errors.js';
import { HTTP_STATUS, httpError } from '../shared/http-errors.js';

interface DocParams {
  collection: string;
  key: string;
}

/**
 * The hub's HTTP API for cloud-side apps: health, reads of the primary store, writes that flow
 * to the agents like any other, and the conflict archive; and for an external broker, the
 * authentication and authorization it asks over HTTP. It reaches the hub through HubApi only.
 */
export async function createHubHttp(hub: HubApi, log: Logger, adminToken?: string) {
  // Per-request lines only at debug.
  const level = log.level === 'debug' || log.level === 'trace' ? log.level : 'warn';
  const app = Fastify({ loggerInstance: log.child({ component: 'http' }, { level }) });

  // Everything but the probes and the dashboard's page needs the admin token, when one is set
  // (it must be, beyond loopback); the page asks for it and sends it with its own requests.
  app.addHook('onRequest', async (request) => {
    if (adminToken === undefined || request.url === '/healthz' || request.url === '/readyz' || request.url === '/') return;
    if (!bearerMatches(request.headers.authorization, adminToken)) throw new UnauthorizedError('admin token');
  });
  app.setErrorHandler(async (error, _request, reply) => {
    const { status, body } = httpError(error);
    if (status >= 500) log.error({ err: error }, 'request failed');
    return reply.code(status).send(body);
  });

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_request, reply) => (hub.ready ? { ready: true } : reply.code(503).send({ ready: false })));

  app.get('/metrics', async (_request, reply) => {
    const { contentType, text } = await hub.metrics();
    return reply.type(contentType).send(text);
  });

  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(DASHBOARD_HTML));
  app.get('/v1/history', async () => ({ samples: hub.history() }));

  app.get('/v1/agents', async () => ({ agents: await hub.fleet() }));
  app.get<{ Params: { agentId: string } }>('/v1/agents/:agentId', async (request) => {
    const agent = (await hub.fleet()).find((a) => a.agentId === request.params.agentId);
    if (!agent) throw new NotFoundError(`the hub knows no agent ${request.params.agentId}`);
    return agent;
  });
  app.get('/v1/collections', async () => hub.collections());
  app.get<{ Params: { collection: string }; Querystring: { prefix?: string; after?: string; limit?: string } }>(
    '/v1/docs/:collection',
    async (request) => ({
      docs: await hub.listDocuments(request.params.collection, {
        ...(request.query.prefix !== undefined && { prefix: request.query.prefix }),
        ...(request.query.after !== undefined && { after: request.query.after }),
        limit: Math.min(Number(request.query.limit) || 100, 1000),
      }),
    }),
  );
  app.get<{ Querystring: { limit?: string } }>('/v1/rejections', async (request) => ({
    rejections: await hub.rejections(Math.min(Number(request.query.limit) || 100, 1000)),
  }));

  app.get('/v1/status', async () => hub.status());

  app.get<{ Params: DocParams }>('/v1/docs/:collection/:key', async (request) => {
    const { collection, key } = request.params;
    const doc = await hub.document(collection, key);
    if (!doc) throw new NotFoundError(`no document ${collection}/${key} at the hub`);
    return { collection, key, value: doc.value, version: doc.version, hlc: doc.hlc, origin: doc.origin };
  });

  for (const op of ['put', 'patch', 'del'] as const) {
    const method = op === 'del' ? 'DELETE' : (op.toUpperCase() as 'PUT' | 'PATCH');
    app.route<{ Params: DocParams; Body: unknown }>({
      method,
      url: '/v1/docs/:collection/:key',
      handler: async (request, reply) => {
        const { collection, key } = request.params;
        const base = parseIfMatch(request.headers['if-match']);
        const result = await hub.write({
          c: collection,
          k: key,
          op,
          ...(op !== 'del' && { v: request.body }),
          ...(base !== undefined && { base }),
        });
        if (result.outcome === 'committed') return reply.code(200).send(result);
        // The same codes and statuses as the device's API gives a write that was refused or lost a conflict.
        const code = result.outcome === 'conflict' ? ErrorCode.WRITE_CONFLICT : ErrorCode.WRITE_REJECTED;
        return reply.code(HTTP_STATUS[code]!).send({ code, message: result.detail, ...result });
      },
    });
  }

  // Blobs: content streams in and out as it is, whatever its type, never held whole in memory.
  await app.register(async (blobs) => {
    blobs.removeAllContentTypeParsers();
    blobs.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    blobs.put<{ Params: DocParams; Body: AsyncIterable<Uint8Array> | undefined }>('/v1/blobs/:collection/:key', async (request, reply) => {
      const { collection, key } = request.params;
      const contentType = request.headers['content-type'] ?? 'application/octet-stream';
      const result = await hub.putBlob(collection, key, request.body ?? emptyBody(), contentType);
      if (result.outcome === 'committed') return reply.code(200).send(result);
      const code = result.outcome === 'conflict' ? ErrorCode.WRITE_CONFLICT : ErrorCode.WRITE_REJECTED;
      return reply.code(HTTP_STATUS[code]!).send({ code, message: result.detail, ...result });
    });
    blobs.get<{ Params: DocParams }>('/v1/blobs/:collection/:key', async (request, reply) => {
      const { blob, chunks } = await hub.blob(request.params.collection, request.params.key);
      return reply
        .type(blob.contentType)
        .header('content-length', blob.size)
        .header('etag', `"${blob.sha256}"`)
        .send(Readable.from(chunks));
    });
  });

  app.get<{ Querystring: { collection?: string; key?: string; before?: string; limit?: string } }>('/v1/conflicts', async (request) => {
    const { collection, key, before, limit } = request.query;
    return {
      conflicts: await hub.conflicts({
        ...(collection !== undefined && { collection }),
        ...(key !== undefined && { key }),
        ...(before !== undefined && { before: Number(before) }),
        limit: Math.min(Number(limit) || 100, 1000),
      }),
    };
  });

  // After a restore from a backup: what agents reported lost, and committing it again.
  app.get<{ Querystring: { pending?: string; limit?: string } }>('/v1/restore/lost', async (request) =>
    hub.lost({ pending: request.query.pending === 'true', limit: Math.min(Number(request.query.limit) || 1000, 10_000) }),
  );
  app.post<{ Querystring: { include?: string } }>('/v1/restore/reapply', async (request) => ({
    partitions: await hub.reapplyLost({ unvouched: request.query.include === 'unvouched' }),
  }));

  await app.register(brokerAuthRoutes(hub));

  await app.ready();
  return app;
}

export type HubHttp = Awaited<ReturnType<typeof createHubHttp>>;

/** The body of a PUT that sent none: empty content. */
async function* emptyBody(): AsyncGenerator<Uint8Array> {
  // Nothing to yield.
}
