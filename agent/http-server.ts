import { closeWithin, HTTP_CLOSE_GRACE_MS } from '../shared/http-close.js';
import { STATUS_CODES, createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { NotFoundError } from '../shared/errors.js';
import { httpError } from '../shared/http-errors.js';
import { BODY_METHODS, RequestError, readBody } from './http-body.js';

/** A request as a handler sees it: path parameters and query decoded, body parsed. */
export interface HttpRequest {
  method: string;
  params: Record<string, string>;
  /** Each query parameter's first value. */
  query: Record<string, string | undefined>;
  headers: IncomingHttpHeaders;
  body: unknown;
  /** The response, for a handler that writes it itself and returns STREAMED. */
  response: ServerResponse;
  /** The request itself, for a route that reads its body as a stream (`streamBody`): `body` is then undefined. */
  incoming: IncomingMessage;
}

/** An answer other than a JSON value with status 200. */
export class Reply {
  constructor(
    readonly status: number,
    /** A JSON value, or the text of `contentType`. */
    readonly body: unknown,
    readonly contentType?: string,
  ) {}
}

/** Returned by a handler that wrote its own response, one that stays open (an event stream). */
export const STREAMED = Symbol('streamed');

/** Returns a JSON value (sent with 200), a Reply, or STREAMED; a thrown error is answered by `httpError`. */
export type Handler = (request: HttpRequest) => unknown;

export interface HttpServerOptions {
  log: Logger;
  /** Largest request body read, in bytes. */
  bodyLimit: number;
  /** Runs first on every request, routed or not; throws to refuse it (a missing token). */
  guard: (headers: IncomingHttpHeaders) => void;
}

interface Route {
  method: string;
  /** The handler reads the body itself, as it streams in (a blob's content): it is not read whole first. */
  streamBody: boolean;
  /** Literal segments, and `:name` for a parameter (one whole segment). */
  segments: string[];
  handler: Handler;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * A small JSON API server over node:http: routes by method and path, with `:name` segments; bodies
 * of JSON or plain text; every error answered as `{ code, message }` through `httpError`. It is
 * what the device API needs and no more, so that an agent does not load a web framework: on a Pi
 * that is megabytes of memory for a handful of localhost routes.
 */
export class HttpServer {
  readonly server: Server;
  /** `METHOD /path` of every route, as declared (`:name` for parameters). */
  readonly routes: string[] = [];
  readonly #routes: Route[] = [];
  /** Responses handlers keep open: ended on close, or the server would wait for their clients. */
  readonly #streams = new Set<ServerResponse>();

  constructor(private readonly options: HttpServerOptions) {
    this.server = createServer((request, response) => void this.#handle(request, response));
    // As long as the device API kept connections open before (clients polling it reuse them).
    this.server.keepAliveTimeout = 72_000;
    // A request Node cannot parse is answered in the API's error form too, not with a bare status.
    this.server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable || error.code === 'ECONNRESET') return void socket.destroy();
      const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const body = JSON.stringify(httpError(new RequestError(status, 'malformed HTTP request')).body);
      const head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: ${JSON_TYPE}`;
      socket.end(`${head}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
  }

  route(method: string, path: string, handler: Handler, options: { streamBody?: boolean } = {}): void {
    this.#routes.push({ method, segments: path.split('/'), handler, streamBody: options.streamBody ?? false });
    this.routes.push(`${method} ${path}`);
  }

  listen(address: { host: string; port: number }): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(address.port, address.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /**
   * Stops listening, ends open streams and idle connections, and resolves once every connection
   * is gone; a request still under way after `graceMs` has its connection cut (closeWithin).
   */
  close(graceMs = HTTP_CLOSE_GRACE_MS): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    const closed = new Promise<void>((resolve, reject) => this.server.close((error) => (error ? reject(error) : resolve())));
    for (const stream of this.#streams) stream.end();
    this.server.closeIdleConnections();
    return closeWithin(this.server, () => closed, graceMs);
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const started = performance.now();
    const log = this.options.log;
    if (log.isLevelEnabled('debug')) {
      response.once('finish', () =>
        log.debug(
          { method: request.method, url: request.url, status: response.statusCode, ms: Math.round(performance.now() - started) },
          'request',
        ),
      );
    }
    try {
      this.options.guard(request.headers);
      const method = request.method ?? 'GET';
      const url = request.url ?? '/';
      const q = url.indexOf('?');
      const path = q === -1 ? url : url.slice(0, q);
      const found = this.#match(method === 'HEAD' ? 'GET' : method, path);
      if (!found) throw new NotFoundError(`the device API has no route ${method} ${path}`);
      const body = BODY_METHODS.has(method) && !found.route.streamBody ? await readBody(request, this.options.bodyLimit) : undefined;
      const query: Record<string, string> = {};
      for (const [name, value] of new URLSearchParams(q === -1 ? '' : url.slice(q + 1))) query[name] ??= value;
      const result = await found.route.handler({
        method,
        params: found.params,
        query,
        headers: request.headers,
        body,
        response,
        incoming: request,
      });
      if (result === STREAMED) {
        this.#streams.add(response);
        response.once('close', () => this.#streams.delete(response));
      } else if (result instanceof Reply) {
        send(
          response,
          result.status,
          result.contentType ?? JSON_TYPE,
          result.contentType ? String(result.body) : JSON.stringify(result.body),
        );
      } else {
        send(response, 200, JSON_TYPE, JSON.stringify(result));
      }
    } catch (error) {
      const { status, body } = httpError(error);
      if (status >= 500) log.error({ err: error }, 'request failed');
      if (response.headersSent) response.destroy();
      else send(response, status, JSON_TYPE, JSON.stringify(body));
    }
  }

  /** The route for a method and path; a parameter takes one whole segment, which may be empty (the handler refuses it). */
  #match(method: string, path: string): { route: Route; params: Record<string, string> } | undefined {
    const segments = path.split('/');
    const route = this.#routes.find(
      (r) =>
        r.method === method && r.segments.length === segments.length && r.segments.every((s, i) => s.startsWith(':') || s === segments[i]),
    );
    if (!route) return undefined;
    const params: Record<string, string> = {};
    route.segments.forEach((s, i) => {
      if (s.startsWith(':')) params[s.slice(1)] = decodeSegment(segments[i]!, path);
    });
    return { route, params };
  }
}

function decodeSegment(segment: string, path: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new RequestError(400, `'${path}' is not a valid url component`);
  }
}

function send(response: ServerResponse, status: number, contentType: string, text: string): void {
  response.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  response.end(text);
}
