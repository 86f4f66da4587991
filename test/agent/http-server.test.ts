import { request } from 'node:http';
import { connect } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpServer, Reply, STREAMED } from '../../agent/http-server.js';
import { UnauthorizedError } from '../../shared/errors.js';

/** The device API's server without an agent: what it does with requests before and after a handler. */
describe('device API server', () => {
  let server: HttpServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function serve(configure: (app: HttpServer) => void, guard: (headers: Record<string, unknown>) => void = () => {}) {
    server = new HttpServer({ log: pino({ level: 'silent' }), bodyLimit: 1000, guard });
    configure(server);
    await server.listen({ host: '127.0.0.1', port: 0 });
    const { port } = server.server.address() as { port: number };
    return { url: `http://127.0.0.1:${port}`, port };
  }

  const echo = (app: HttpServer): void => {
    app.route('PUT', '/v1/docs/:collection/:key', (r) => ({ params: r.params, query: r.query, body: r.body ?? null }));
    app.route('GET', '/v1/text', () => new Reply(202, 'plain words', 'text/plain; charset=utf-8'));
  };

  it('routes by method and path, decoding parameters; HEAD answers as GET without a body', async () => {
    const { url } = await serve(echo);
    const put = await fetch(`${url}/v1/docs/notes/a%2Fb?x=1&x=2&y=%20`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: '{"v":1}',
    });
    expect(put.status).toBe(200);
    expect(put.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await put.json()).toEqual({ params: { collection: 'notes', key: 'a/b' }, query: { x: '1', y: ' ' }, body: { v: 1 } });
    const text = await fetch(`${url}/v1/text`);
    expect([text.status, text.headers.get('content-type'), await text.text()]).toEqual([202, 'text/plain; charset=utf-8', 'plain words']);
    const head = await fetch(`${url}/v1/text`, { method: 'HEAD' });
    expect([head.status, head.headers.get('content-length'), await head.text()]).toEqual([202, '11', '']);
  });

  it('answers an unknown route, a wrong method and a bad escape with a typed error', async () => {
    const { url } = await serve(echo);
    for (const [method, path] of [
      ['GET', '/v1/nothing'],
      ['POST', '/v1/text'],
      ['GET', '/v1/text/'],
    ]) {
      const response = await fetch(`${url}${path}`, { method });
      expect(response.status).toBe(404);
      expect(await response.json()).toEqual({ code: 'OUTPOST_NOT_FOUND', message: `the device API has no route ${method} ${path}` });
    }
    const escape = await fetch(`${url}/v1/docs/notes/%E0%A4%A`, { method: 'PUT' });
    expect([escape.status, ((await escape.json()) as { code: string }).code]).toEqual([400, 'OUTPOST_INVALID_REQUEST']);
  });

  it('reads JSON and plain text bodies and refuses the rest as invalid requests', async () => {
    const { url } = await serve(echo);
    const put = async (headers: Record<string, string>, body: string): Promise<[number, unknown]> => {
      const response = await fetch(`${url}/v1/docs/c/k`, { method: 'PUT', headers, body });
      return [response.status, await response.json()];
    };
    const json = { 'content-type': 'application/json' };
    expect(await put({ 'content-type': 'text/plain' }, 'hello')).toMatchObject([200, { body: 'hello' }]);
    expect(await put({ 'content-type': 'APPLICATION/JSON' }, '"s"')).toMatchObject([200, { body: 's' }]);
    const refused = (status: number, message: string): [number, unknown] => [
      status,
      { code: 'OUTPOST_INVALID_REQUEST', message: `the request is invalid: ${message}` },
    ];
    expect(await put(json, '')).toEqual(refused(400, "Body cannot be empty when content-type is set to 'application/json'"));
    expect(await put(json, '{bad')).toEqual(refused(400, "Body is not valid JSON but content-type is set to 'application/json'"));
    expect(await put(json, '{"__proto__":{"admin":true}}')).toEqual(
      refused(400, "Body is not valid JSON but content-type is set to 'application/json'"),
    );
    expect(await put(json, '{"constructor":{"prototype":{"admin":true}}}')).toEqual(
      refused(400, "Body is not valid JSON but content-type is set to 'application/json'"),
    );
    expect(await put({ 'content-type': 'application/xml' }, '<a/>')).toEqual(refused(415, 'Unsupported Media Type'));
    expect(await put(json, `"${'x'.repeat(1000)}"`)).toEqual(refused(413, 'Request body is too large'));
    // A body without a content type is refused; no body at all is none.
    const bare = await fetch(`${url}/v1/docs/c/k`, { method: 'PUT', body: new Blob(['{}']) });
    expect(bare.status).toBe(415);
    expect(await (await fetch(`${url}/v1/docs/c/k`, { method: 'PUT' })).json()).toMatchObject({ body: null });
  });

  it('refuses a streamed body once it passes the limit, without a length given first', async () => {
    const { port } = await serve(echo);
    const answer = await new Promise<[number | undefined, string]>((resolve, reject) => {
      const req = request({ port, method: 'PUT', path: '/v1/docs/c/k', headers: { 'content-type': 'text/plain' } }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve([res.statusCode, text]));
      });
      req.on('error', reject);
      for (let i = 0; i < 5; i++) req.write('x'.repeat(300));
      req.end();
    });
    expect(answer[0]).toBe(413);
    expect(JSON.parse(answer[1])).toMatchObject({ code: 'OUTPOST_INVALID_REQUEST' });
  });

  it('runs the guard before routing, and answers what cannot be parsed as HTTP in the same form', async () => {
    const { url, port } = await serve(echo, (headers) => {
      if (headers.authorization !== 'Bearer t') throw new UnauthorizedError();
    });
    for (const path of ['/v1/text', '/v1/nothing']) expect((await fetch(`${url}${path}`)).status).toBe(401);
    expect((await fetch(`${url}/v1/text`, { headers: { authorization: 'Bearer t' } })).status).toBe(202);
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.end('NOT HTTP AT ALL\r\n\r\n'));
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toMatchObject({ code: 'OUTPOST_INVALID_REQUEST' });
  });

  it('ends open streams on close instead of waiting for their clients to leave', async () => {
    const { url } = await serve((app) =>
      app.route('GET', '/v1/stream', (r) => {
        r.response.writeHead(200, { 'content-type': 'text/event-stream' });
        r.response.write(': open\n\n');
        return STREAMED;
      }),
    );
    const response = await fetch(`${url}/v1/stream`);
    const reader = response.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe(': open\n\n');
    await server!.close();
    expect((await reader.read()).done).toBe(true);
  });

  it('closes within its grace even while a client is stalled in the middle of a request', async () => {
    const { port } = await serve(echo);
    const client = connect(port, '127.0.0.1');
    await new Promise((resolve) => client.once('connect', resolve));
    const cut = new Promise((resolve) => client.once('close', resolve));
    client.write('PUT /v1/docs/a/b HTTP/1.1\r\nhost: pi\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"v":');
    await server!.close(100);
    await cut;
    server = undefined;
  });
});
