import Fastify from 'fastify';
import type { Logger } from 'pino';
import type { Hub } from './hub.js';

/** The hub's HTTP API: health and a read view of the primary store. */

export async function createHubHttp(hub: Hub, log: Logger) {
  // Per-request lines only at debug.
  const level = log.level === 'debug' || log.level === 'trace' ? log.level : 'warn';
  const app = Fastify({ loggerInstance: log.child({ component: 'http' }, { level }) });

  app.get('/healthz', async () => ({ ok: true }));

  app.get('/v1/status', async () => ({
    head: hub.store.head,
    connectedAgents: hub.connectedAgents,
  }));

  app.get<{ Params: { collection: string; key: string } }>('/v1/docs/:collection/:key', async (request, reply) => {
    const { collection, key } = request.params;
    const doc = hub.store.document(collection, key);
    if (!doc || doc.deleted) {
      return reply.code(404).send({ code: 'OUTPOST_NOT_FOUND', message: `no document ${collection}/${key} at the hub` });
    }
    return { collection, key, value: doc.value, version: doc.version, hlc: doc.hlc, origin: doc.origin };
  });

  await app.ready();
  return app;
}

export type HubHttp = Awaited<ReturnType<typeof createHubHttp>>;
