import { ErrorCode, OutpostError } from './errors.js';

/**
 * The HTTP status each code answers with, on the device's and the hub's HTTP API alike. Codes
 * without one never reach an HTTP client: they stop a process at start (configuration, broker,
 * database version) or belong to the CLI. The README's table of codes is checked against this.
 */
export const HTTP_STATUS: Readonly<Partial<Record<ErrorCode, number>>> = {
  [ErrorCode.MESSAGE_TOO_LARGE]: 400,
  [ErrorCode.MALFORMED_MESSAGE]: 400,
  [ErrorCode.INVALID_MESSAGE]: 400,
  [ErrorCode.INVALID_COLLECTION]: 400,
  [ErrorCode.INVALID_KEY]: 400,
  [ErrorCode.INVALID_VALUE]: 400,
  [ErrorCode.VALUE_TOO_LARGE]: 400,
  [ErrorCode.AGENT_CLOSED]: 503,
  [ErrorCode.INVALID_HEADER]: 400,
  [ErrorCode.WRITE_REJECTED]: 422,
  [ErrorCode.WRITE_CONFLICT]: 409,
  [ErrorCode.DURABILITY_TIMEOUT]: 504,
  [ErrorCode.REPLICA_WAIT_ABANDONED]: 409,
  [ErrorCode.READ_TIMEOUT]: 504,
  [ErrorCode.STORAGE_FULL]: 507,
  [ErrorCode.OUTBOX_FULL]: 507,
  [ErrorCode.UNAUTHORIZED]: 401,
  [ErrorCode.STORAGE_FAILED]: 500,
  [ErrorCode.NOT_FOUND]: 404,
  [ErrorCode.INVALID_REQUEST]: 400,
  [ErrorCode.WRONG_PARTITION]: 409,
  [ErrorCode.HUB_STOPPING]: 503,
  [ErrorCode.BLOB_INVALID_CHUNK]: 400,
  [ErrorCode.BLOB_MISMATCH]: 422,
  [ErrorCode.BLOB_INCOMPLETE]: 409,
  [ErrorCode.BLOB_TOO_LARGE]: 413,
  [ErrorCode.BLOB_REFUSED]: 403,
  [ErrorCode.BLOB_UNAVAILABLE]: 503,
  [ErrorCode.INTERNAL]: 500,
};

/** The JSON body of every error an HTTP API answers: a stable code, a message, and the error's facts. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  [fact: string]: unknown;
}

/**
 * What an HTTP API answers for an error: its status and body. Outpost errors keep their facts;
 * a request the HTTP framework refused (a body that is not JSON, a wrong content type, too large
 * a body: any error with a 4xx `statusCode`) is OUTPOST_INVALID_REQUEST with that status; anything
 * else is OUTPOST_INTERNAL.
 */
export function httpError(error: unknown): { status: number; body: ErrorBody } {
  if (error instanceof OutpostError) return { status: HTTP_STATUS[error.code] ?? 500, body: error.toJSON() };
  const message = error instanceof Error ? error.message : String(error);
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { status, body: { code: ErrorCode.INVALID_REQUEST, message: `the request is invalid: ${message}` } };
  }
  return { status: 500, body: { code: ErrorCode.INTERNAL, message } };
}
