import { encodeCbor } from '../../shared/codec.js';
import { adjustDigest, documentHash } from '../../shared/digest.js';
import type { ChangeBuckets, ConflictRecord, LogEntry } from './hub-store.js';
import { encodedChangeBytes, type ConflictRow, type DocumentRow, type LogRow } from './rows.js';

/**
 * Rows a group commit writes, built the same way by both stores and named as the tables name
 * their columns: the SQLite store runs them at once, the PostgreSQL store sends them afterwards.
 */

/** A log entry as committed: what readers see, plus the op identity, time and digest. */
export interface LogWrite extends LogRow {
  incarnation: string | null;
  seq: number | null;
  committed_at: number;
  digest: string | null;
  buckets: string | null;
  /** The collection's digest right after this change. */
  collection_digest: number;
}

/** A document's new state (SQLite binds `deleted` as 0 or 1), with its hash. */
export interface DocumentWrite extends DocumentRow {
  deleted: boolean;
  buckets: string | null;
  hash: number;
}

/** Where a change starts from: its document's stored hash (0: none) and its collection's digest. */
export interface DigestsBefore {
  hash: number;
  digest: number;
}

/** One row of a bucket's log index: the change at `lsn` is in the bucket, or took its document out (`left`). */
export interface LogBucketWrite {
  bucket: string;
  lsn: number;
  left: boolean;
}

/**
 * `OUTPOST_DIGESTS=off`: documents are committed without hashing them, every digest stays 0. Only
 * for the benchmark that measures what digests cost the hub per change (`npm run bench`): such a
 * hub tells devices wrong digests, and they would repair what is not damaged.
 */
const DIGESTS_OFF = process.env.OUTPOST_DIGESTS === 'off';

/**
 * The log entry and the document one change writes at `lsn`, an upper bound of its size as an
 * encoded Change (from the value bytes just encoded: no second encoding), and its collection's
 * digest after it: moved from `before` by the document's old hash and new one, the one hash
 * computed per change.
 */
export function committedRows(
  entry: LogEntry,
  lsn: number,
  before: DigestsBefore,
): { log: LogWrite; document: DocumentWrite; bytes: number; digest: number } {
  const value = entry.value === undefined ? null : (entry.encoded ?? encodeCbor(entry.value));
  const buckets = entry.buckets ? JSON.stringify(entry.buckets.in) : null;
  const hash = DIGESTS_OFF ? 0 : documentHash(entry.collection, entry.key, lsn, entry.op === 'del', value);
  const digest = adjustDigest(adjustDigest(before.digest, before.hash, -1), hash);
  const log: LogWrite = {
    lsn,
    collection: entry.collection,
    key: entry.key,
    op: entry.op,
    value,
    hlc: entry.hlc,
    origin: entry.origin,
    incarnation: entry.incarnation,
    seq: entry.seq,
    committed_at: Date.now(),
    digest: entry.digest ?? null,
    buckets,
    collection_digest: digest,
  };
  const document: DocumentWrite = {
    collection: entry.collection,
    key: entry.key,
    value,
    deleted: entry.op === 'del',
    version: lsn,
    hlc: entry.hlc,
    origin: entry.origin,
    field_hlcs: entry.fieldHlcs ? encodeCbor(entry.fieldHlcs) : null,
    buckets,
    hash,
  };
  return { log, document, bytes: encodedChangeBytes(log), digest };
}

/** The bucket log index rows of a scoped change at `lsn`: one per bucket it is in or left. */
export function logBucketRows(buckets: ChangeBuckets, lsn: number): LogBucketWrite[] {
  return [...buckets.in.map((bucket) => ({ bucket, lsn, left: false })), ...buckets.left.map((bucket) => ({ bucket, lsn, left: true }))];
}

/**
 * How a document's bucket index rows change when its buckets go from `before` (as stored; none
 * for a new or unscoped document) to `after`: the rows to remove and to add. A document that
 * stays in its buckets, as most writes do, changes none.
 */
export function documentBucketChanges(
  before: readonly string[] | undefined,
  after: readonly string[],
): { removed: string[]; added: string[] } {
  const was = new Set(before);
  const is = new Set(after);
  return { removed: [...was].filter((b) => !is.has(b)), added: [...is].filter((b) => !was.has(b)) };
}

/** An archived conflict as its row (values CBOR-encoded): the inverse of toConflictRecord. */
export function conflictRow(c: Omit<ConflictRecord, 'id'>): Omit<ConflictRow, 'id'> {
  const cbor = (value: unknown): Buffer | null => (value === undefined ? null : encodeCbor(value));
  return {
    collection: c.collection,
    key: c.key,
    policy: c.policy,
    reason: c.reason,
    detail: c.detail,
    loser_origin: c.loser.origin,
    loser_incarnation: c.loser.incarnation,
    loser_seq: c.loser.seq,
    loser_op: c.loser.op,
    loser_value: cbor(c.loser.value),
    loser_hlc: c.loser.hlc,
    winner_lsn: c.winner.lsn,
    winner_origin: c.winner.origin,
    winner_hlc: c.winner.hlc,
    winner_value: cbor(c.winner.value),
    at: c.at,
  };
}
