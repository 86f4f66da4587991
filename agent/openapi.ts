/**
 * The device HTTP API described in OpenAPI 3.1, served at /v1/openapi.json. A test checks that
 * every route the server registers is described here, so the two cannot drift apart.
 */
const error = { $ref: '#/components/schemas/Error' };
const errorResponse = (description: string): object => ({ description, content: { 'application/json': { schema: error } } });
const docParams = [
  { name: 'collection', in: 'path', required: true, schema: { type: 'string', pattern: '^[a-z0-9_-]{1,64}$' } },
  { name: 'key', in: 'path', required: true, schema: { type: 'string', maxLength: 512 } },
];
const writeParams = [
  ...docParams,
  {
    name: 'durability',
    in: 'query',
    schema: { type: 'string', pattern: '^(local|hub|replicas:[0-9]+)$' },
    description: 'local (default), hub, or replicas:N',
  },
  { name: 'timeoutMs', in: 'query', schema: { type: 'integer', minimum: 0 } },
  { name: 'If-Match', in: 'header', schema: { type: 'string' }, description: 'the document version the write is made against' },
];
const readParams = [
  {
    name: 'confirmed',
    in: 'query',
    schema: { type: 'boolean' },
    description: "only what the hub confirmed, without this device's pending writes",
  },
  { name: 'minLsn', in: 'query', schema: { type: 'integer', minimum: 0 }, description: 'wait until this LSN is applied (causal token)' },
  { name: 'timeoutMs', in: 'query', schema: { type: 'integer', minimum: 0 } },
];
const receipt = {
  description: 'stored (and, with durability hub or replicas, confirmed)',
  content: { 'application/json': { schema: { $ref: '#/components/schemas/WriteReceipt' } } },
};
const writeErrors = {
  400: errorResponse('invalid collection, key, value or option'),
  409: errorResponse('lost a conflict (durability hub)'),
  422: errorResponse('rejected by the hub (durability hub)'),
  504: errorResponse('not confirmed in time; the write stays queued'),
  507: errorResponse("the device's storage budget or the collection's maxPending is reached; nothing was stored"),
};

export const openApiDocument = {
  openapi: '3.1.0',
  info: { title: 'Outpost agent (device API)', version: '1' },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    schemas: {
      Error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } },
      WriteReceipt: {
        type: 'object',
        required: ['incarnation', 'seq', 'hlc'],
        properties: {
          incarnation: { type: 'string' },
          seq: { type: 'integer' },
          hlc: { type: 'string' },
          lsn: { type: 'integer' },
          partition: { type: 'string' },
        },
      },
      Document: {
        type: 'object',
        required: ['collection', 'key', 'value', 'version', 'pending'],
        properties: {
          collection: { type: 'string' },
          key: { type: 'string' },
          value: {},
          version: { type: 'integer' },
          pending: { type: 'boolean' },
        },
      },
    },
  },
  security: [{ bearer: [] }, {}],
  paths: {
    '/v1/docs/{collection}/{key}': {
      get: {
        summary: 'Read a document',
        parameters: [...docParams, ...readParams],
        responses: {
          200: { description: 'the document', content: { 'application/json': { schema: { $ref: '#/components/schemas/Document' } } } },
          404: errorResponse('no such document on this device'),
          504: errorResponse('minLsn not reached in time'),
        },
      },
      put: {
        summary: 'Store a document',
        parameters: writeParams,
        requestBody: { required: true, content: { 'application/json': { schema: {} } } },
        responses: { 200: receipt, ...writeErrors },
      },
      patch: {
        summary: 'Merge fields into a document (null removes a field)',
        parameters: writeParams,
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object' } } } },
        responses: { 200: receipt, ...writeErrors },
      },
      delete: { summary: 'Delete a document', parameters: writeParams, responses: { 200: receipt, ...writeErrors } },
    },
    '/v1/docs/{collection}': {
      get: {
        summary: 'List documents in key order',
        parameters: [
          docParams[0],
          ...readParams,
          { name: 'prefix', in: 'query', schema: { type: 'string' } },
          { name: 'after', in: 'query', schema: { type: 'string' } },
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000 } },
        ],
        responses: {
          200: {
            description: 'documents',
            content: {
              'application/json': {
                schema: { type: 'object', properties: { docs: { type: 'array', items: { $ref: '#/components/schemas/Document' } } } },
              },
            },
          },
        },
      },
    },
    '/v1/blobs/{collection}/{key}': {
      get: {
        summary: "A blob's content, downloaded from the hub first if this device does not hold it",
        parameters: [...docParams, { name: 'timeoutMs', in: 'query', schema: { type: 'integer', minimum: 0 } }],
        responses: {
          200: { description: 'the content, with its SHA-256 as the ETag', content: { '*/*': {} } },
          304: { description: 'If-None-Match named this content' },
          404: errorResponse('no such document on this device'),
          503: errorResponse('not held here and cannot be fetched now (offline, or not in time)'),
        },
      },
      put: {
        summary:
          'Store a blob: its content (the body, streamed; its Content-Type kept) uploads in the background, and its document commits once the hub holds it',
        parameters: docParams,
        requestBody: { required: true, content: { '*/*': {} } },
        responses: {
          200: {
            description: 'content and write durable on this device',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['sha256', 'size', 'contentType', 'hlc'],
                  properties: {
                    sha256: { type: 'string' },
                    size: { type: 'integer' },
                    contentType: { type: 'string' },
                    hlc: { type: 'string' },
                  },
                },
              },
            },
          },
          400: errorResponse('invalid collection or key'),
          413: errorResponse('content over the largest a blob may be'),
        },
      },
    },
    '/v1/changes': {
      get: {
        summary: 'Server-Sent Events feed of committed changes applied to this device',
        parameters: [{ name: 'collection', in: 'query', schema: { type: 'string' } }],
        responses: {
          200: {
            description: 'event stream: `change` events (one committed change each) and `rejection` events',
            content: { 'text/event-stream': {} },
          },
        },
      },
    },
    '/v1/status': {
      get: {
        summary: 'Connection, outbox, per-collection lag, last sync, next window',
        responses: { 200: { description: 'status', content: { 'application/json': {} } } },
      },
    },
    '/v1/sync': {
      post: {
        summary: 'Sync now',
        parameters: [{ name: 'timeoutMs', in: 'query', schema: { type: 'integer' } }],
        responses: { 200: { description: 'synced' }, 202: { description: 'still syncing after timeoutMs' } },
      },
    },
    '/v1/rejections': {
      get: {
        summary: 'Writes refused by the hub, lost in a conflict, expired or dropped',
        parameters: [{ name: 'limit', in: 'query', schema: { type: 'integer' } }],
        responses: { 200: { description: 'rejections' } },
      },
    },
    '/v1/openapi.json': { get: { summary: 'This description', responses: { 200: { description: 'OpenAPI document' } } } },
    '/metrics': {
      get: { summary: 'Prometheus metrics', responses: { 200: { description: 'text exposition format', content: { 'text/plain': {} } } } },
    },
  },
} as const;
