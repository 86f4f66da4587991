import { pipeline } from 'node:stream/promises';
import { NotFoundError } from '../shared/errors.js';
import type { Agent } from './agent.js';
import { STREAMED, type HttpServer } from './http-server.js';

/**
 * The device API's blobs: `PUT /v1/blobs/:collection/:key` streams the body into the device's
 * store (hashed as it comes; answered once content and write are durable here, with the blob's
 * description), `GET` streams the content back, downloading it from the hub first if the device
 * does not hold it (`?timeoutMs=` bounds that), with its hash as the ETag.
 */
export function blobRoutes(app: HttpServer, agent: Agent): void {
  app.route(
    'PUT',
    '/v1/blobs/:collection/:key',
    async ({ params, headers, incoming }) => {
      const contentType = headers['content-type'] ?? 'application/octet-stream';
      return agent.putBlob(params.collection!, params.key!, incoming, { contentType });
    },
    { streamBody: true },
  );

  app.route('GET', '/v1/blobs/:collection/:key', async ({ params, query, method, headers, response }) => {
    const { collection, key } = params as { collection: string; key: string };
    const timeoutMs = query.timeoutMs === undefined ? undefined : Number(query.timeoutMs);
    const blob = await agent.getBlob(collection, key, timeoutMs !== undefined && Number.isFinite(timeoutMs) ? { timeoutMs } : {});
    if (!blob) throw new NotFoundError(`no document ${collection}/${key} on this device`);
    const etag = `"${blob.sha256}"`;
    if (headers['if-none-match'] === etag) {
      response.writeHead(304, { etag }).end();
      return STREAMED;
    }
    response.writeHead(200, { 'content-type': blob.contentType, 'content-length': blob.size, etag });
    if (method === 'HEAD') {
      response.end();
      return STREAMED;
    }
    // Headers are sent: a failure from here on can only cut the response short (pipeline ends it; its length says so).
    pipeline(blob.stream(), response).catch(() => undefined);
    return STREAMED;
  });
}
