import type { Hlc } from '../../shared/hlc.js';
import type { Change } from '../../shared/messages.js';
import { decodeCbor } from '../../shared/codec.js';
import { decodeValue } from '../../shared/value-bytes.js';
import type { JsonValue } from '../../shared/values.js';
import type {
  ConflictRecord,
  Credential,
  CredentialListing,
  DocumentPage,
  ListedDocument,
  LogPage,
  Rejected,
  StoredDocument,
  LoggedWrite,
} from './hub-store.js';

/**
 * Rows as both SQL stores read them, and what they become. PostgreSQL's bigint columns arrive as
 * numbers (see pg-pool.ts); SQLite's booleans arrive as 0 or 1.
 */

export interface DocumentRow {
  collection: string;
  key: string;
  value: Buffer | null;
  deleted: boolean | number;
  version: number;
  hlc: string;
  origin: string;
  field_hlcs: Buffer | null;
  /** A scoped collection's document: its buckets as a JSON array (NULL: unscoped); read where a reader needs them. */
  buckets?: string | null;
  /** The buckets it was in before the hub's rules last changed, while not written since (see HubStore.rebucket). */
  prior_buckets?: string | null;
  /** Its hash (shared/digest.ts); NULL only until a database from before digests is backfilled. */
  hash?: number | null;
}

export interface LogRow {
  lsn: number;
  collection: string;
  key: string;
  op: 'put' | 'del';
  value: Buffer | null;
  hlc: string;
  origin: string;
  /** A scoped change: the buckets its document is in after it, as a JSON array; read by bucket readers only. */
  buckets?: string | null;
  /** Read through a bucket the change took its document out of: it reads as `out`. */
  left_bucket?: boolean | number;
  /** Its collection's digest right after it (NULL: logged before digests); read by log pages only. */
  collection_digest?: number | null;
}

export interface ConflictRow {
  id: number;
  collection: string;
  key: string;
  policy: string;
  reason: string;
  detail: string | null;
  loser_origin: string;
  loser_incarnation: string | null;
  loser_seq: number | null;
  loser_op: string;
  loser_value: Buffer | null;
  loser_hlc: string;
  winner_lsn: number;
  winner_origin: string;
  winner_hlc: string;
  winner_value: Buffer | null;
  at: number;
}

/**
 * The document as a write is weighed against. Its value is decoded on first use only: a put
 * under last-writer-wins to an unscoped collection never reads it, a patch or a merge does.
 */
export function toStoredDocument(row: Omit<DocumentRow, 'collection' | 'key'>): StoredDocument {
  const bytes = row.value;
  let decoded: JsonValue | undefined;
  return {
    get value(): JsonValue | undefined {
      if (decoded === undefined && bytes !== null) decoded = decodeValue(bytes);
      return decoded;
    },
    encoded: bytes,
    deleted: Boolean(row.deleted),
    version: row.version,
    hlc: row.hlc as Hlc,
    origin: row.origin,
    ...(row.field_hlcs !== null && { fieldHlcs: decodeCbor(row.field_hlcs) as Record<string, Hlc> }),
    ...(row.buckets != null && { buckets: parseBuckets(row.buckets) }),
  };
}

/** A stored bucket list (a JSON array of bucket ids, written by committedRows). */
export function parseBuckets(text: string): string[] {
  return JSON.parse(text) as string[];
}

export function logRowToChange(row: LogRow): Change {
  if (row.left_bucket) return { lsn: row.lsn, c: row.collection, k: row.key, op: 'out', hlc: row.hlc, o: row.origin };
  return {
    lsn: row.lsn,
    c: row.collection,
    k: row.key,
    op: row.op,
    ...(row.value !== null && { v: row.value }),
    hlc: row.hlc,
    o: row.origin,
    ...(row.buckets != null && { bk: parseBuckets(row.buckets) }),
  };
}

export function documentRowToChange(row: DocumentRow): Change {
  return {
    lsn: row.version,
    c: row.collection,
    k: row.key,
    op: row.deleted ? 'del' : 'put',
    ...(row.value !== null && !row.deleted && { v: row.value }),
    hlc: row.hlc,
    o: row.origin,
    ...(row.buckets != null && { bk: parseBuckets(row.buckets) }),
  };
}

/** A document a device already holds at its version: only its buckets now, as `tag`. */
export function documentRowToTag(row: DocumentRow): Change {
  return { lsn: row.version, c: row.collection, k: row.key, op: 'tag', hlc: row.hlc, o: row.origin, bk: parseBuckets(row.buckets ?? '[]') };
}

export function toConflictRecord(r: ConflictRow): ConflictRecord {
  const value = (b: Buffer | null): JsonValue | undefined => (b === null ? undefined : (decodeCbor(b) as JsonValue));
  return {
    id: r.id,
    collection: r.collection,
    key: r.key,
    policy: r.policy,
    reason: r.reason,
    detail: r.detail,
    loser: {
      origin: r.loser_origin,
      incarnation: r.loser_incarnation,
      seq: r.loser_seq,
      op: r.loser_op,
      value: value(r.loser_value),
      hlc: r.loser_hlc,
    },
    winner: { lsn: r.winner_lsn, origin: r.winner_origin, hlc: r.winner_hlc, value: value(r.winner_value) },
    at: r.at,
  };
}

export interface ListedDocumentRow {
  key: string;
  value: Buffer | null;
  version: number;
  origin: string;
}

export function toListedDocument(r: ListedDocumentRow): ListedDocument {
  return { key: r.key, value: r.value === null ? undefined : (decodeCbor(r.value) as JsonValue), version: r.version, origin: r.origin };
}

export interface RejectedRow {
  agent_id: string;
  incarnation: string;
  seq: number;
  reason: string | null;
  detail: string | null;
  at: number | null;
}

export function toRejected(r: RejectedRow): Rejected {
  return { agentId: r.agent_id, incarnation: r.incarnation, seq: r.seq, reason: r.reason, detail: r.detail, at: r.at };
}

export interface CredentialRow {
  token_hash: string;
  revoked_at: number | null;
  verified_fingerprint: string | null;
}

export function toCredential(row: CredentialRow): Credential {
  return { tokenHash: row.token_hash, revoked: row.revoked_at !== null, verifiedFingerprint: row.verified_fingerprint };
}

export function toCredentialListing(r: { agent_id: string; created_at: number; revoked_at: number | null }): CredentialListing {
  return { agentId: r.agent_id, createdAt: r.created_at, revokedAt: r.revoked_at };
}

/** An unrevoked agent with its Mosquitto hash (null: provisioned before the hub stored one). */
export function toBrokerCredential(r: { agent_id: string; mosquitto_hash: string | null }): {
  agentId: string;
  mosquittoHash: string | null;
} {
  return { agentId: r.agent_id, mosquittoHash: r.mosquitto_hash };
}

/**
 * An upper bound of a row's size as an encoded Change: every string in UTF-8, field names and
 * headers, and the buckets' JSON (longer than their CBOR). The same bound as the SQLite
 * store's, so both page by the same sizes.
 */
export function encodedChangeBytes(row: {
  collection: string;
  key: string;
  origin: string;
  hlc: string;
  value: Buffer | null;
  buckets?: string | null;
}): number {
  return (
    (row.value?.length ?? 0) +
    Buffer.byteLength(row.key) +
    Buffer.byteLength(row.collection) +
    Buffer.byteLength(row.origin) +
    row.hlc.length +
    (row.buckets?.length ?? 0) +
    64
  );
}

/**
 * A page reads at most this many times its size of rows, the reader's or not: a reader of one
 * sparse collection in a log full of others' large values gets a page that covers less of the
 * log (it asks again from where it ends), instead of making the hub read megabytes for nothing.
 */
export const MAX_READ_FACTOR = 2;

/**
 * Wraps a PostgreSQL page query (`limited`: its rows in `order`, already limited) so that rows
 * past the read budget in parameter `budget` are not sent (see MAX_READ_FACTOR): each row's
 * running size in `order`, and `rows_in_query`, how many the limited query had, to tell a page
 * cut for size from the end.
 */
export function pgWithinReadBudget(columns: string, limited: string, order: string, budget: string): string {
  return `SELECT ${columns}, rows_in_query FROM (
      SELECT ${columns}, coalesce(octet_length(value), 0) + 64 AS own,
        sum(coalesce(octet_length(value), 0) + 64) OVER (ORDER BY ${order}) AS running, count(*) OVER () AS rows_in_query
      FROM (${limited}) limited
    ) page WHERE running - own < ${budget} ORDER BY ${order}`;
}

/**
 * One page of the log from rows read in LSN order after `from` (at most `limit`): no more than
 * `maxBytes` of changes (at least one), skipping what `include` refuses while still covering it,
 * and reading no more than MAX_READ_FACTOR times `maxBytes` of rows (`rows` is consumed only so
 * far). `cut`: the source itself stopped early for size, so fewer rows than `limit` does not
 * mean the end of the log.
 */
export function logPage(
  rows: Iterable<LogRow>,
  from: number,
  limit: number,
  maxBytes: number,
  include: (collection: string) => boolean,
  cut = false,
): LogPage {
  const changes: Change[] = [];
  // The digest after each collection's last change in the page (null: that entry predates digests).
  const digests = new Map<string, number | null>();
  let bytes = 0;
  let readBytes = 0;
  let read = 0;
  let lastRead = from;
  const page = (complete: boolean): LogPage => ({ changes, complete, through: lastRead, readBytes, digests: knownDigests(digests) });
  for (const row of rows) {
    const size = encodedChangeBytes(row);
    readBytes += size;
    if (read > 0 && readBytes > MAX_READ_FACTOR * maxBytes) return page(false);
    read += 1;
    if (!include(row.collection)) {
      lastRead = row.lsn; // not for this reader; the page still covers it
      continue;
    }
    bytes += size;
    if (changes.length > 0 && bytes > maxBytes) return page(false);
    changes.push(logRowToChange(row));
    digests.set(row.collection, row.collection_digest ?? null);
    lastRead = row.lsn;
  }
  return page(!cut && read < limit);
}

function knownDigests(digests: ReadonlyMap<string, number | null>): Record<string, number> {
  return Object.fromEntries([...digests].filter((entry): entry is [string, number] => entry[1] !== null));
}

/**
 * One snapshot page from documents read in (collection, key) order (at most `limit`): no more
 * than `maxBytes` of them (at least one), reading no more than MAX_READ_FACTOR times that; `next`
 * is where the next page starts, unless this was the last. Documents `include` refuses are
 * skipped but still count as read. `cut` as for logPage.
 */
export function documentPage(
  rows: Iterable<DocumentRow>,
  limit: number,
  maxBytes: number,
  include: (row: DocumentRow) => boolean,
  cut = false,
): DocumentPage {
  return snapshotPage(rows, limit, maxBytes, (row) => (include(row) ? 'whole' : 'none'), cut);
}

/** How much of a document read a snapshot page sends: all of it, its buckets only (`tag`), or nothing. */
type Sent = 'whole' | 'tag' | 'none';

/**
 * documentPage, where each document may also be sent as a tag: counted at the tag's size toward
 * `maxBytes`, at the whole row's toward the read budget (its value was read all the same).
 */
function snapshotPage(
  rows: Iterable<DocumentRow>,
  limit: number,
  maxBytes: number,
  send: (row: DocumentRow) => Sent,
  cut: boolean,
): DocumentPage {
  const docs: Change[] = [];
  let bytes = 0;
  let readBytes = 0;
  let last: [string, string] | undefined;
  let read = 0;
  let stopped = false;
  for (const row of rows) {
    const size = encodedChangeBytes(row);
    readBytes += size;
    if (read > 0 && readBytes > MAX_READ_FACTOR * maxBytes) {
      stopped = true;
      break;
    }
    const sent = send(row);
    if (sent === 'none') {
      last = [row.collection, row.key];
      read += 1;
      continue;
    }
    bytes += sent === 'tag' ? encodedChangeBytes({ ...row, value: null }) : size;
    if (docs.length > 0 && bytes > maxBytes) {
      stopped = true;
      break;
    }
    read += 1;
    last = [row.collection, row.key];
    docs.push(sent === 'tag' ? documentRowToTag(row) : documentRowToChange(row));
  }
  const complete = !stopped && !cut && read < limit;
  return { docs, next: complete || !last ? undefined : last, readBytes };
}

/**
 * One snapshot page of a bucket (see documentPage). A document a device already has at its
 * current version, because one of its buckets that the device holds (`held`: bucket to the LSN
 * it applied) brought that version, or one it was in before the hub's rules changed (its prior
 * buckets), comes as a tag: its buckets now, no value. Never left out: the device forgets the
 * bucket it joins (or catches up by snapshot) from what it holds, as what it last heard may be
 * stale, and learns it again from this snapshot alone.
 */
export function bucketDocumentPage(
  rows: Iterable<DocumentRow>,
  limit: number,
  maxBytes: number,
  held: ReadonlyMap<string, number>,
  cut = false,
): DocumentPage {
  const broughtBy = (buckets: string | null | undefined, version: number): boolean =>
    buckets != null && parseBuckets(buckets).some((bucket) => (held.get(bucket) ?? 0) >= version);
  const send = (row: DocumentRow): Sent => {
    if (held.size === 0 || row.buckets == null) return 'whole';
    return broughtBy(row.buckets, row.version) || broughtBy(row.prior_buckets, row.version) ? 'tag' : 'whole';
  };
  return snapshotPage(rows, limit, maxBytes, send, cut);
}

/** A log row as `HubStore.loggedWrites` reads it. */
export interface LoggedWriteRow {
  lsn: number;
  collection: string;
  origin: string;
  incarnation: string | null;
  seq: number | null;
  buckets: string | null;
}

export function toLoggedWrites(rows: readonly LoggedWriteRow[]): Map<number, LoggedWrite> {
  return new Map(
    rows.map(({ lsn, buckets, ...write }) => [lsn, { ...write, ...(buckets !== null && { buckets: parseBuckets(buckets) }) }]),
  );
}
