/**
 * Error kinds shared by hub and agent. Every error that crosses the wire or reaches a user
 * has a stable code; messages say what happened, to what, and what to do.
 */
export const ErrorCode = {
  MESSAGE_TOO_LARGE: 'OUTPOST_MESSAGE_TOO_LARGE',
  MALFORMED_MESSAGE: 'OUTPOST_MALFORMED_MESSAGE',
  INVALID_MESSAGE: 'OUTPOST_INVALID_MESSAGE',
  INVALID_COLLECTION: 'OUTPOST_INVALID_COLLECTION',
  INVALID_KEY: 'OUTPOST_INVALID_KEY',
  INVALID_VALUE: 'OUTPOST_INVALID_VALUE',
  VALUE_TOO_LARGE: 'OUTPOST_VALUE_TOO_LARGE',
  AGENT_CLOSED: 'OUTPOST_AGENT_CLOSED',
  INVALID_HEADER: 'OUTPOST_INVALID_HEADER',
  WRITE_REJECTED: 'OUTPOST_WRITE_REJECTED',
  WRITE_CONFLICT: 'OUTPOST_WRITE_CONFLICT',
  DURABILITY_TIMEOUT: 'OUTPOST_DURABILITY_TIMEOUT',
  READ_TIMEOUT: 'OUTPOST_READ_TIMEOUT',
  STORAGE_FULL: 'OUTPOST_STORAGE_FULL',
  OUTBOX_FULL: 'OUTPOST_OUTBOX_FULL',
  UNAUTHORIZED: 'OUTPOST_UNAUTHORIZED',
  STORAGE_FAILED: 'OUTPOST_STORAGE_FAILED',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class OutpostError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export class MessageTooLargeError extends OutpostError {
  constructor(readonly size: number, readonly limit: number) {
    super(
      ErrorCode.MESSAGE_TOO_LARGE,
      `message of ${size} bytes exceeds the limit of ${limit} bytes; send smaller batches or values`,
    );
  }
}

export class MalformedMessageError extends OutpostError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(ErrorCode.MALFORMED_MESSAGE, `message is not valid CBOR: ${reason}`, options);
  }
}

export class InvalidMessageError extends OutpostError {
  constructor(readonly path: string, reason: string) {
    super(
      ErrorCode.INVALID_MESSAGE,
      `message does not match the protocol schema at ${path || '/'}: ${reason}; ` +
        'check that agent and hub speak the same protocol version',
    );
  }
}

export class InvalidCollectionError extends OutpostError {
  constructor(readonly collection: string) {
    super(
      ErrorCode.INVALID_COLLECTION,
      `collection name ${JSON.stringify(collection)} is invalid; use 1-64 characters of a-z, 0-9, _ or -`,
    );
  }
}

export class InvalidKeyError extends OutpostError {
  constructor(readonly key: string, limit: number) {
    super(
      ErrorCode.INVALID_KEY,
      `document key ${JSON.stringify(key.slice(0, 64))} is invalid; use a non-empty UTF-8 string of at most ${limit} bytes`,
    );
  }
}

export class InvalidValueError extends OutpostError {
  constructor(reason: string) {
    super(ErrorCode.INVALID_VALUE, `document value is invalid: ${reason}; values must be plain JSON data`);
  }
}

export class ValueTooLargeError extends OutpostError {
  constructor(readonly size: number, readonly limit: number) {
    super(
      ErrorCode.VALUE_TOO_LARGE,
      `document value of ${size} bytes exceeds the limit of ${limit} bytes; split it across several documents`,
    );
  }
}

export class InvalidHeaderError extends OutpostError {
  constructor(readonly header: string, reason: string) {
    super(ErrorCode.INVALID_HEADER, `header ${header} is invalid: ${reason}`);
  }
}

/** A write that asked for hub durability was refused, or lost a conflict. */
export class WriteRefusedError extends OutpostError {
  constructor(readonly seq: number, readonly outcome: 'rejected' | 'conflict', readonly reason: string, detail: string) {
    super(
      outcome === 'conflict' ? ErrorCode.WRITE_CONFLICT : ErrorCode.WRITE_REJECTED,
      outcome === 'conflict'
        ? `write ${seq} lost a conflict (${reason}): ${detail}; read the document again and retry if it still applies`
        : `write ${seq} was rejected by the hub (${reason}): ${detail}; it will not be retried`,
    );
  }
  override toJSON(): { code: ErrorCode; message: string; seq: number; outcome: string; reason: string } {
    return { ...super.toJSON(), seq: this.seq, outcome: this.outcome, reason: this.reason };
  }
}

export class DurabilityTimeoutError extends OutpostError {
  constructor(readonly seq: number, level: string, timeoutMs: number, connected: boolean) {
    super(
      ErrorCode.DURABILITY_TIMEOUT,
      `write ${seq} is stored on this device but was not confirmed (${level}) within ${timeoutMs} ms` +
        `${connected ? '' : ' because the agent is offline'}; it stays queued and will be sent — do not write it again`,
    );
  }
  override toJSON(): { code: ErrorCode; message: string; seq: number } {
    return { ...super.toJSON(), seq: this.seq };
  }
}

export class ReadTimeoutError extends OutpostError {
  constructor(readonly minLsn: number, readonly appliedLsn: number, timeoutMs: number) {
    super(
      ErrorCode.READ_TIMEOUT,
      `this device has applied changes up to LSN ${appliedLsn}, not yet ${minLsn}, after waiting ${timeoutMs} ms; retry later or read without minLsn`,
    );
  }
}

export class UnauthorizedError extends OutpostError {
  constructor() {
    super(ErrorCode.UNAUTHORIZED, 'missing or wrong bearer token; send Authorization: Bearer <token>');
  }
}

export class AgentClosedError extends OutpostError {
  constructor() {
    super(ErrorCode.AGENT_CLOSED, 'the agent is closed; open it again before writing');
  }
}

export class StorageFullError extends OutpostError {
  constructor(path: string, options?: { cause?: unknown }) {
    super(
      ErrorCode.STORAGE_FULL,
      `the database at ${path} is full; the write was not stored (nothing already queued was lost); free disk space or raise the storage budget`,
      options,
    );
  }
}

export class OutboxFullError extends OutpostError {
  constructor(readonly collection: string, readonly maxPending: number) {
    super(
      ErrorCode.OUTBOX_FULL,
      `collection ${collection} already has ${maxPending} writes waiting to be uploaded (its maxPending); ` +
        'the write was not stored; retry once the device is back online, or raise maxPending at the hub',
    );
  }
}

export class StorageFailedError extends OutpostError {
  constructor(path: string, action: string, options?: { cause?: unknown }) {
    super(ErrorCode.STORAGE_FAILED, `could not ${action} the database at ${path}: ${String((options?.cause as Error | undefined)?.message ?? 'unknown error')}`, options);
  }
}

/**
 * Why the hub refused a single operation. Reported in the op's outcome, never by dropping
 * the connection, so that one bad write never blocks the ones behind it.
 */
export type RejectReason =
  | 'invalid_collection'
  | 'invalid_key'
  | 'invalid_value'
  | 'too_large'
  | 'clock_skew'
  | 'schema'
  | 'forbidden'
  | 'unknown_collection'
  /** The collection belongs to another partition, led by another hub process. */
  | 'wrong_partition';
