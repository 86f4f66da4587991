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
  REPLICA_WAIT_ABANDONED: 'OUTPOST_REPLICA_WAIT_ABANDONED',
  READ_TIMEOUT: 'OUTPOST_READ_TIMEOUT',
  STORAGE_FULL: 'OUTPOST_STORAGE_FULL',
  OUTBOX_FULL: 'OUTPOST_OUTBOX_FULL',
  UNAUTHORIZED: 'OUTPOST_UNAUTHORIZED',
  STORAGE_FAILED: 'OUTPOST_STORAGE_FAILED',
  DATABASE_TOO_NEW: 'OUTPOST_DATABASE_TOO_NEW',
  NOT_FOUND: 'OUTPOST_NOT_FOUND',
  INVALID_REQUEST: 'OUTPOST_INVALID_REQUEST',
  WRONG_PARTITION: 'OUTPOST_WRONG_PARTITION',
  OUT_OF_SCOPE: 'OUTPOST_OUT_OF_SCOPE',
  HUB_STOPPING: 'OUTPOST_HUB_STOPPING',
  INVALID_CONFIG: 'OUTPOST_INVALID_CONFIG',
  BROKER_UNREACHABLE: 'OUTPOST_BROKER_UNREACHABLE',
  BROKER_EXPORT: 'OUTPOST_BROKER_EXPORT',
  AGENT_UNREACHABLE: 'OUTPOST_AGENT_UNREACHABLE',
  HUB_UNREACHABLE: 'OUTPOST_HUB_UNREACHABLE',
  HUB_RUNNING: 'OUTPOST_HUB_RUNNING',
  BACKUP_INVALID: 'OUTPOST_BACKUP_INVALID',
  BLOB_INVALID_CHUNK: 'OUTPOST_BLOB_INVALID_CHUNK',
  BLOB_MISMATCH: 'OUTPOST_BLOB_MISMATCH',
  BLOB_INCOMPLETE: 'OUTPOST_BLOB_INCOMPLETE',
  BLOB_TOO_LARGE: 'OUTPOST_BLOB_TOO_LARGE',
  BLOB_REFUSED: 'OUTPOST_BLOB_REFUSED',
  BLOB_UNAVAILABLE: 'OUTPOST_BLOB_UNAVAILABLE',
  INTERNAL: 'OUTPOST_INTERNAL',
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

/** An error about one write of the device's sequence: its JSON names the seq. */
export class WriteSeqError extends OutpostError {
  constructor(
    code: ErrorCode,
    readonly seq: number,
    message: string,
  ) {
    super(code, message);
  }
  override toJSON(): { code: ErrorCode; message: string; seq: number } {
    return { ...super.toJSON(), seq: this.seq };
  }
}

export class MessageTooLargeError extends OutpostError {
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(ErrorCode.MESSAGE_TOO_LARGE, `message of ${size} bytes exceeds the limit of ${limit} bytes; send smaller batches or values`);
  }
}

export class MalformedMessageError extends OutpostError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(ErrorCode.MALFORMED_MESSAGE, `message is not valid CBOR: ${reason}`, options);
  }
}

export class InvalidMessageError extends OutpostError {
  constructor(
    readonly path: string,
    reason: string,
  ) {
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
  constructor(
    readonly key: string,
    limit: number,
  ) {
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
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(
      ErrorCode.VALUE_TOO_LARGE,
      `document value of ${size} bytes exceeds the limit of ${limit} bytes; split it across several documents`,
    );
  }
}

export class InvalidHeaderError extends OutpostError {
  constructor(
    readonly header: string,
    reason: string,
  ) {
    super(ErrorCode.INVALID_HEADER, `header ${header} is invalid: ${reason}`);
  }
}

/** A write that asked for hub durability was refused, or lost a conflict. */
export class WriteRefusedError extends OutpostError {
  constructor(
    readonly seq: number,
    readonly outcome: 'rejected' | 'conflict',
    readonly reason: string,
    detail: string,
  ) {
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

/** A committed write waited for replicas when its partition started a new incarnation (a restored hub). */
export class ReplicaWaitAbandonedError extends WriteSeqError {
  constructor(seq: number, reason: string) {
    super(
      ErrorCode.REPLICA_WAIT_ABANDONED,
      seq,
      `write ${seq} was committed at the hub, but ${reason} before enough replicas reported it: whether they hold it is no longer ` +
        'known (after a restore, see the lost writes: `outpost hub restore lost`)',
    );
  }
}

export class DurabilityTimeoutError extends WriteSeqError {
  constructor(seq: number, level: string, timeoutMs: number, connected: boolean) {
    super(
      ErrorCode.DURABILITY_TIMEOUT,
      seq,
      `write ${seq} is stored on this device but was not confirmed (${level}) within ${timeoutMs} ms` +
        `${connected ? '' : ' because the agent is offline'}; it stays queued and will be sent — do not write it again`,
    );
  }
}

export class ReadTimeoutError extends OutpostError {
  constructor(
    readonly minLsn: number,
    readonly appliedLsn: number,
    timeoutMs: number,
  ) {
    super(
      ErrorCode.READ_TIMEOUT,
      `this device has applied changes up to LSN ${appliedLsn}, not yet ${minLsn}, after waiting ${timeoutMs} ms; retry later or read without minLsn`,
    );
  }
}

export class UnauthorizedError extends OutpostError {
  /** `what`: which token, as the user knows it ("admin token"). */
  constructor(what = 'bearer token') {
    super(ErrorCode.UNAUTHORIZED, `missing or wrong ${what}; send Authorization: Bearer <token>`);
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
  constructor(
    readonly collection: string,
    readonly maxPending: number,
  ) {
    super(
      ErrorCode.OUTBOX_FULL,
      `collection ${collection} already has ${maxPending} writes waiting to be uploaded (its maxPending); ` +
        'the write was not stored; retry once the device is back online, or raise maxPending at the hub',
    );
  }
}

export class StorageFailedError extends OutpostError {
  constructor(path: string, action: string, options?: { cause?: unknown }) {
    super(
      ErrorCode.STORAGE_FAILED,
      `could not ${action} the database at ${path}: ${String((options?.cause as Error | undefined)?.message ?? 'unknown error')}`,
      options,
    );
  }
}

/** A document or agent that is not there. */
export class NotFoundError extends OutpostError {
  constructor(what: string) {
    super(ErrorCode.NOT_FOUND, what);
  }
}

/** A collection of a partition this hub process does not lead: its leader serves it. */
export class WrongPartitionError extends OutpostError {
  constructor(
    readonly collection: string,
    readonly partition: string,
    served: readonly string[],
  ) {
    super(
      ErrorCode.WRONG_PARTITION,
      `collection ${collection} belongs to partition ${partition}, which this hub process does not lead ` +
        `(it leads ${served.join(', ')}): use the HTTP API of partition ${partition}'s leader`,
    );
  }
  override toJSON(): { code: ErrorCode; message: string; collection: string; partition: string } {
    return { ...super.toJSON(), collection: this.collection, partition: this.partition };
  }
}

/** The hub is stopping (or was deposed) and commits nothing more. */
export class HubStoppingError extends OutpostError {
  constructor() {
    super(ErrorCode.HUB_STOPPING, 'the hub is shutting down; retry against the new leader or after restart');
  }
}

/** A configuration that cannot be used as given; the message names the option and what to change. */
export class ConfigError extends OutpostError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.INVALID_CONFIG, message, options);
  }
}

/** A database written by a newer Outpost than this one. */
export class DatabaseTooNewError extends OutpostError {
  constructor(
    readonly what: string,
    readonly version: number,
    readonly supported: number,
  ) {
    super(ErrorCode.DATABASE_TOO_NEW, `${what} schema version ${version} is newer than this Outpost (${supported}); upgrade Outpost`);
  }
}

/** The CLI could not reach the agent's HTTP API. */
export class AgentUnreachableError extends OutpostError {
  constructor(url: string, options: { cause: unknown }) {
    super(
      ErrorCode.AGENT_UNREACHABLE,
      `cannot reach the agent at ${url} (${(options.cause as Error).message}); is it running? (--url)`,
      options,
    );
  }
}

/** The CLI could not reach the hub's HTTP API. */
export class HubUnreachableError extends OutpostError {
  constructor(url: string, options: { cause: unknown }) {
    super(
      ErrorCode.HUB_UNREACHABLE,
      `cannot reach the hub at ${url} (${(options.cause as Error).message}); is it running with --http? (--url)`,
      options,
    );
  }
}

/** A restore refused because a hub process has the database open (or leads it). */
export class HubRunningError extends OutpostError {
  /** `action`: what the user can do once the hub is stopped. */
  constructor(
    readonly where: string,
    action = 'restore',
  ) {
    super(ErrorCode.HUB_RUNNING, `a hub process has ${where} open (or leads it); stop the hub, then ${action}`);
  }
}

/** A backup that cannot be restored: not a readable hub database, or damaged. */
export class BackupInvalidError extends OutpostError {
  constructor(
    readonly file: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(ErrorCode.BACKUP_INVALID, `${file} cannot be restored: ${reason}; nothing was changed`, options);
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
  | 'wrong_partition'
  /** The document is outside the device's scope, or the write would move it out (hub/scope-rules.ts). */
  | 'out_of_scope'
  /** The document would be in more scope buckets than a change may name: its listed field is too long. */
  | 'too_many_buckets';
