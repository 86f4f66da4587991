import type { IncomingMessage } from 'node:http';
import parseJson from 'secure-json-parse';

/**
 * A request the API refuses before any handler sees it (its body, its URL): `httpError` answers it
 * as OUTPOST_INVALID_REQUEST with this status. The messages are those the device API has always
 * given for these cases.
 */
export class RequestError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** Methods whose requests may carry a body; the others' bodies are never read. */
export const BODY_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * The request's body: undefined when there is none, the text of a `text/plain` one, the value of
 * an `application/json` one. JSON that would set `__proto__` or `constructor.prototype` is refused,
 * as invalid JSON; so is any other media type (415) and a body over `limit` bytes (413).
 */
export async function readBody(request: IncomingMessage, limit: number): Promise<unknown> {
  const type = request.headers['content-type'];
  if (type === undefined) {
    const length = request.headers['content-length'];
    if (request.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return undefined;
    throw new RequestError(415, 'Unsupported Media Type');
  }
  const mediaType = type.split(';', 1)[0]!.trim().toLowerCase();
  if (mediaType !== 'application/json' && mediaType !== 'text/plain') throw new RequestError(415, 'Unsupported Media Type');
  const text = await readText(request, limit);
  if (mediaType === 'text/plain') return text;
  if (text === '') throw new RequestError(400, "Body cannot be empty when content-type is set to 'application/json'");
  try {
    return parseJson(text) as unknown;
  } catch {
    throw new RequestError(400, "Body is not valid JSON but content-type is set to 'application/json'");
  }
}

function readText(request: IncomingMessage, limit: number): Promise<string> {
  const declared = request.headers['content-length'] === undefined ? undefined : Number(request.headers['content-length']);
  // Refused before a byte is read when the client says how much it will send.
  if (declared !== undefined && declared > limit) return Promise.reject(new RequestError(413, 'Request body is too large'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (error: Error | undefined): void => {
      request.off('data', onData).off('end', onEnd).off('error', onError);
      if (error) {
        request.resume(); // the rest is read and dropped, so that the connection can carry the answer
        reject(error);
      } else if (declared !== undefined && declared !== size) {
        reject(new RequestError(400, 'Request body size did not match Content-Length'));
      } else {
        resolve(Buffer.concat(chunks, size).toString('utf8'));
      }
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) settle(new RequestError(413, 'Request body is too large'));
      else chunks.push(chunk);
    };
    const onEnd = (): void => settle(undefined);
    const onError = (error: Error): void => settle(new RequestError(400, error.message));
    request.on('data', onData).on('end', onEnd).on('error', onError);
  });
}
