import Fastify from 'fastify';
import type { Logger } from 'pino';
import { brokerAuthRoutes } from './broker-auth-http.js';
import type { HubBase } from './hub-base.js';
import { DASHBOARD_HTML } from './dashboard.js';
import { createHubMetrics } from './metrics.js';
import type { WriteResult } from './ingest.js';
import { bearerMatches } from '../shared/bearer.js';
import { ErrorCode, HTTP_STATUS, httpError, NotFoundError, UnauthorizedError, WrongPartitionError } from '../shared/errors.js';

interface DocParams {
  collection: string;
  key: string;
}

/** `If-Match: 7` or `If-Match: "7"` → 7; absent → undefined. */
function ifMatch(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const version = Number(String(header).replace(/"/g, ''));
  return Number.isInteger(version) && version >= 0 ? version : undefined;
}

/**
 * The hub's HTTP API for cloud-side apps: health, reads of the primary store, writes that flow
 * to the agents like any other, and the conflict archive; and for an external broker, the
 * authentication and authorization it asks over HTTP.
 */
export async function createHubHttp(hub: HubBase, log: Logger, adminToken?: string) {
  // Per-request lines only at debug.
  const level = log.level === 'debug' || log.level === 'trace' ? log.level : 'warn';
  const app = Fastify({ loggerInstance: log.child({ component: 'http' }, { level }) });

  // Everything but the probes and the dashboard's page needs the admin token, when one is set
  // (it must be, beyond loopback); the page asks for it and sends it with its own requests.
  app.addHook('onRequest', async (request) => {
    if (adminToken === undefined || request.url === '/healthz' || request.url === '/readyz' || request.url === '/') return;
    if (!bearerMatches(request.headers.authorization, adminToken)) throw new UnauthorizedError('admin token');
  });

  /** The hub of the partition a collection belongs to, if this process leads it. */
  const hubOf = (collection: string): HubBase => {
    const partition = hub.core.partitionOf(collection);
    const hubs = hub.partitionHubs();
    const owner = hubs.get(partition);
    if (!owner) throw new WrongPartitionError(collection, partition, [...hubs.keys()]);
    return owner;
  };
  app.setErrorHandler(async (error, _request, reply) => {
    const { status, body } = httpError(error);
    if (status >= 500) log.error({ err: error }, 'request failed');
    return reply.code(status).send(body);
  });

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_request, reply) => (hub.ready ? { ready: true } : reply.code(503).send({ ready: false })));

  const metrics = createHubMetrics(
    hub.core,
    () => hub.fleet(),
    () => hub.connectedAgents,
  );
  app.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));

  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(DASHBOARD_HTML));
  app.get('/v1/history', async () => ({ samples: hub.history.samples }));

  app.get('/v1/agents', async () => ({ agents: await hub.fleet() }));
  app.get<{ Params: { agentId: string } }>('/v1/agents/:agentId', async (request) => {
    const agent = (await hub.fleet()).find((a) => a.agentId === request.params.agentId);
    if (!agent) throw new NotFoundError(`the hub knows no agent ${request.params.agentId}`);
    return agent;
  });
  app.get('/v1/collections', async () => hub.core.policies.describe());
  app.get<{ Params: { collection: string }; Querystring: { prefix?: string; after?: string; limit?: string } }>(
    '/v1/docs/:collection',
    async (request) => ({
      docs: await hubOf(request.params.collection).store.listDocuments(request.params.collection, {
        ...(request.query.prefix !== undefined && { prefix: request.query.prefix }),
        ...(request.query.after !== undefined && { after: request.query.after }),
        limit: Math.min(Number(request.query.limit) || 100, 1000),
      }),
    }),
  );
  app.get<{ Querystring: { limit?: string } }>('/v1/rejections', async (request) => ({
    rejections: await hub.store.rejections(Math.min(Number(request.query.limit) || 100, 1000)),
  }));

  app.get('/v1/status', async () => {
    // Each partition this process leads, this API's own first; LSNs count per partition.
    const hubs = [hub, ...[...hub.partitionHubs().values()].filter((h) => h !== hub)];
    const partitions = await Promise.all(
      hubs.map(async (h) => ({
        partition: h.partition,
        ...(h.core.epoch !== undefined && { epoch: h.core.epoch }),
        head: h.store.head,
        ready: h.ready,
        collections: await h.store.collectionHeads(),
      })),
    );
    return {
      /** This API's own partition (the first one the process serves). */
      partition: hub.partition,
      ...(hub.core.epoch !== undefined && { epoch: hub.core.epoch }),
      head: hub.store.head,
      prunedThrough: hub.store.prunedThrough,
      connectedAgents: hub.connectedAgents,
      /** Head LSN of every collection, in whichever partition it is: an agent has caught up when it has applied these. */
      collections: Object.assign({}, ...partitions.map((p) => p.collections)) as Record<string, number>,
      partitions,
    };
  });

  app.get<{ Params: DocParams }>('/v1/docs/:collection/:key', async (request) => {
    const { collection, key } = request.params;
    const doc = await hubOf(collection).store.document(collection, key);
    if (!doc || doc.deleted) throw new NotFoundError(`no document ${collection}/${key} at the hub`);
    return { collection, key, value: doc.value, version: doc.version, hlc: doc.hlc, origin: doc.origin };
  });

  const send = (result: WriteResult, reply: { code: (n: number) => { send: (b: unknown) => unknown } }): unknown => {
    if (result.outcome === 'committed') return reply.code(200).send(result);
    // The same codes and statuses as the device's API gives a write that was refused or lost a conflict.
    const code = result.outcome === 'conflict' ? ErrorCode.WRITE_CONFLICT : ErrorCode.WRITE_REJECTED;
    return reply.code(HTTP_STATUS[code]!).send({ code, message: result.detail, ...result });
  };

  for (const op of ['put', 'patch', 'del'] as const) {
    const method = op === 'del' ? 'DELETE' : (op.toUpperCase() as 'PUT' | 'PATCH');
    app.route<{ Params: DocParams; Body: unknown }>({
      method,
      url: '/v1/docs/:collection/:key',
      handler: async (request, reply) => {
        const { collection, key } = request.params;
        const base = ifMatch(request.headers['if-match']);
        const result = await hubOf(collection).core.write({
          c: collection,
          k: key,
          op,
          ...(op !== 'del' && { v: request.body }),
          ...(base !== undefined && { base }),
        });
        return send(result, reply);
      },
    });
  }

  app.get<{ Querystring: { collection?: string; key?: string; before?: string; limit?: string } }>('/v1/conflicts', async (request) => {
    const { collection, key, before, limit } = request.query;
    return {
      conflicts: await (collection === undefined ? hub : hubOf(collection)).store.conflicts({
        ...(collection !== undefined && { collection }),
        ...(key !== undefined && { key }),
        ...(before !== undefined && { before: Number(before) }),
        limit: Math.min(Number(limit) || 100, 1000),
      }),
    };
  });

  await app.register(brokerAuthRoutes(hub));

  await app.ready();
  return app;
}

export type HubHttp = Awaited<ReturnType<typeof createHubHttp>>;
