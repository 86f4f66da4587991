import type pg from 'pg';
import type { StorageFailedError } from '../../shared/errors.js';
import type { PgPool } from './pg-pool.js';
import { ConcurrentWriterError, WriterFencedError } from './writer-errors.js';
import type { IngestPlan, RecordedOutcome, StoredDocument } from './hub-store.js';
import { agentKey, documentKey, outcomeKey, type GroupCommitWrites, type IngestPrefetch } from './pg-ingest-tx.js';
import { storedHash } from './digest-rows.js';
import { toRecordedOutcome, type OutcomeRow } from './outcome-rows.js';
import { toStoredDocument, type DocumentRow } from './rows.js';
import { conflictRow } from './write-rows.js';

/**
 * The SQL of one group commit on PostgreSQL: one round of reads (four queries in parallel on
 * the pool, each keyed by the plan's arrays) and one write statement. Two round trips' latency
 * whatever the number of ops.
 */

const DOCUMENTS = `
SELECT d.collection, d.key, d.value, d.deleted, d.version, d.hlc, d.origin, d.field_hlcs, d.buckets, d.hash
FROM unnest($1::text[], $2::text[]) AS p(collection, key)
JOIN documents d ON d.collection = p.collection AND d.key = p.key`;

const COLLECTION_HEADS = 'SELECT name, head_lsn, digest FROM collections WHERE name = ANY($1::text[])';

const LAST_SEQS = `
SELECT s.agent_id, s.incarnation, s.last_seq
FROM unnest($1::text[], $2::text[]) AS p(agent_id, incarnation)
JOIN agent_sequences s ON s.agent_id = p.agent_id AND s.incarnation = p.incarnation`;

/**
 * Outcomes of the given ops: the outcome row if there is one, else the committed run that
 * covers the seq and the digest its log entry still holds. `redeliveriesOnly` keeps the seqs at
 * or below their incarnation's last seq: new ops have no outcome, so they cost no lookups.
 */
function outcomesSql(redeliveriesOnly: boolean): string {
  return `
SELECT p.agent_id, p.incarnation, p.seq, o.outcome, o.lsn, o.reason, o.detail, o.digest,
       r.first_seq AS run_first_seq, r.last_seq AS run_last_seq, r.first_lsn AS run_first_lsn, l.digest AS log_digest
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS p(agent_id, incarnation, seq)
${redeliveriesOnly ? 'JOIN agent_sequences s ON s.agent_id = p.agent_id AND s.incarnation = p.incarnation AND p.seq <= s.last_seq' : ''}
LEFT JOIN outcomes o ON o.agent_id = p.agent_id AND o.incarnation = p.incarnation AND o.seq = p.seq
LEFT JOIN LATERAL (
  SELECT c.first_seq, c.last_seq, c.first_lsn FROM committed_runs c
  WHERE c.agent_id = p.agent_id AND c.incarnation = p.incarnation AND c.first_seq <= p.seq
  ORDER BY c.first_seq DESC LIMIT 1
) r ON o.outcome IS NULL
LEFT JOIN log l ON l.lsn = r.first_lsn + (p.seq - r.first_seq) AND p.seq <= r.last_seq`;
}
export const OUTCOMES_OF_OPS = outcomesSql(false);
const REDELIVERED_OUTCOMES = outcomesSql(true);

/** Reads what the plan touches: documents with their hashes, collection heads and digests, last seqs and redeliveries' outcomes. */
export async function prefetchPlan(pool: pg.Pool, plan: IngestPlan): Promise<IngestPrefetch> {
  const documents = unique(plan.documents, ([c, k]) => documentKey(c, k));
  const collections = [...new Set(documents.map(([c]) => c))];
  // One agent incarnation may upload two batches into the same group commit.
  const agents = unique(plan.agents, (a) => agentKey(a.agentId, a.incarnation));
  const ops = unique(
    plan.agents.flatMap((a) => a.seqs.map((seq) => [a.agentId, a.incarnation, seq] as const)),
    (o) => outcomeKey(...o),
  );
  const none = { rows: [] };
  const contents = [...new Set((plan.contents ?? []).map(([hash]) => hash))];
  const [docRows, headRows, seqRows, outcomeRows, contentRows] = await Promise.all([
    documents.length ? pool.query<DocumentRow>(DOCUMENTS, [documents.map(([c]) => c), documents.map(([, k]) => k)]) : none,
    collections.length ? pool.query<{ name: string; head_lsn: number; digest: number }>(COLLECTION_HEADS, [collections]) : none,
    agents.length
      ? pool.query<{ agent_id: string; incarnation: string; last_seq: number }>(LAST_SEQS, [
          agents.map((a) => a.agentId),
          agents.map((a) => a.incarnation),
        ])
      : none,
    ops.length ? pool.query<OutcomeRow>(REDELIVERED_OUTCOMES, [ops.map((o) => o[0]), ops.map((o) => o[1]), ops.map((o) => o[2])]) : none,
    // Blob content held whole (hub/blobs/pg-content-store.ts), for the documents that name it,
    // touched now: a collection under way removes only content untouched for its grace, under a
    // lock on its row, so either it removed this first (not held: the document is refused) or keeps it.
    contents.length
      ? pool.query<{ hash: string; size: string }>(
          'UPDATE blob_contents SET touched_at = $2 WHERE hash = ANY($1) AND complete RETURNING hash, size',
          [contents, Date.now()],
        )
      : none,
  ]);
  const outcomes = new Map<string, RecordedOutcome>();
  for (const row of outcomeRows.rows) {
    const outcome = toRecordedOutcome(row);
    if (outcome) outcomes.set(outcomeKey(row.agent_id, row.incarnation, row.seq), outcome);
  }
  return {
    documents: new Map<string, StoredDocument>(docRows.rows.map((r) => [documentKey(r.collection, r.key), toStoredDocument(r)])),
    hashes: new Map(docRows.rows.map((r) => [documentKey(r.collection, r.key), storedHash(r)])),
    collectionHeads: new Map(headRows.rows.map((r) => [r.name, r.head_lsn])),
    collectionDigests: new Map(headRows.rows.map((r) => [r.name, r.digest])),
    lastSeqs: new Map(seqRows.rows.map((r) => [agentKey(r.agent_id, r.incarnation), r.last_seq])),
    outcomes,
    contents: new Map(contentRows.rows.map((r) => [r.hash, Number(r.size)])),
  };
}

/**
 * The whole group commit as ONE statement, hence one transaction: the fence first, then every
 * table from arrays. Each insert reads `fence`, so it runs only if the leadership row still
 * held this writer's epoch, head and commit count (and that row's lock serializes writers);
 * otherwise nothing is written and the statement returns `fenced = true`.
 * Documents, heads and sequences arrive deduplicated: ON CONFLICT may touch a row only once.
 * A document's bucket rows removed and added are disjoint: sibling statements see the same
 * snapshot, so none may depend on another's row. The bucket columns' parameters come next to
 * last, the digests' last (each written with its row: a collection's or bucket's with its head,
 * as absolute values the writer computed from its own copy).
 */
const WRITE_GROUP_COMMIT = `
WITH fence AS (
  UPDATE leadership SET head_lsn = $1, group_commits = group_commits + 1
  WHERE epoch = $2 AND head_lsn = $3 AND group_commits = $4
  RETURNING 1
), log_rows AS (
  INSERT INTO log (lsn, collection, key, op, value, hlc, origin, incarnation, seq, committed_at, digest, buckets, collection_digest)
  SELECT * FROM unnest($5::bigint[], $6::text[], $7::text[], $8::text[], $9::bytea[], $10::text[], $11::text[], $12::text[],
    $13::bigint[], $14::bigint[], $15::text[], $60::text[], $73::bigint[])
  WHERE EXISTS (SELECT FROM fence)
), document_rows AS (
  INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, field_hlcs, buckets, hash)
  SELECT * FROM unnest($16::text[], $17::text[], $18::bytea[], $19::boolean[], $20::bigint[], $21::text[], $22::text[], $23::bytea[],
    $61::text[], $74::bigint[])
  WHERE EXISTS (SELECT FROM fence)
  ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value, deleted = excluded.deleted, version = excluded.version,
    hlc = excluded.hlc, origin = excluded.origin, field_hlcs = excluded.field_hlcs, buckets = excluded.buckets, prior_buckets = NULL,
    hash = excluded.hash
), head_rows AS (
  INSERT INTO collections (name, head_lsn, digest)
  SELECT * FROM unnest($24::text[], $25::bigint[], $75::bigint[])
  WHERE EXISTS (SELECT FROM fence)
  ON CONFLICT (name) DO UPDATE SET head_lsn = excluded.head_lsn, digest = excluded.digest
), sequence_rows AS (
  INSERT INTO agent_sequences (agent_id, incarnation, last_seq, updated_at)
  SELECT * FROM unnest($26::text[], $27::text[], $28::bigint[], $29::bigint[])
  WHERE EXISTS (SELECT FROM fence)
  ON CONFLICT (agent_id, incarnation) DO UPDATE SET last_seq = excluded.last_seq, updated_at = excluded.updated_at
), outcome_rows AS (
  INSERT INTO outcomes (agent_id, incarnation, seq, outcome, lsn, reason, detail, digest, at)
  SELECT * FROM unnest($30::text[], $31::text[], $32::bigint[], $33::text[], $34::bigint[], $35::text[], $36::text[], $37::text[], $38::bigint[])
  WHERE EXISTS (SELECT FROM fence)
), run_rows AS (
  INSERT INTO committed_runs (agent_id, incarnation, first_seq, last_seq, first_lsn)
  SELECT * FROM unnest($39::text[], $40::text[], $41::bigint[], $42::bigint[], $43::bigint[])
  WHERE EXISTS (SELECT FROM fence)
), conflict_rows AS (
  INSERT INTO conflicts (collection, key, policy, reason, detail, loser_origin, loser_incarnation, loser_seq, loser_op, loser_value,
    loser_hlc, winner_lsn, winner_origin, winner_hlc, winner_value, at)
  SELECT c.collection, c.key, c.policy, c.reason, c.detail, c.loser_origin, c.loser_incarnation, c.loser_seq, c.loser_op, c.loser_value,
    c.loser_hlc, c.winner_lsn, c.winner_origin, c.winner_hlc, c.winner_value, c.at
  FROM unnest($44::text[], $45::text[], $46::text[], $47::text[], $48::text[], $49::text[], $50::text[], $51::bigint[], $52::text[],
    $53::bytea[], $54::text[], $55::bigint[], $56::text[], $57::text[], $58::bytea[], $59::bigint[]) WITH ORDINALITY
    AS c(collection, key, policy, reason, detail, loser_origin, loser_incarnation, loser_seq, loser_op, loser_value, loser_hlc,
      winner_lsn, winner_origin, winner_hlc, winner_value, at, n)
  WHERE EXISTS (SELECT FROM fence)
  ORDER BY c.n
), log_bucket_rows AS (
  INSERT INTO log_buckets (bucket, lsn, left_bucket)
  SELECT * FROM unnest($62::text[], $63::bigint[], $64::boolean[])
  WHERE EXISTS (SELECT FROM fence)
), removed_document_buckets AS (
  DELETE FROM document_buckets d
  USING unnest($65::text[], $66::text[], $67::text[]) AS r(bucket, collection, key)
  WHERE d.bucket = r.bucket AND d.collection = r.collection AND d.key = r.key AND EXISTS (SELECT FROM fence)
), added_document_buckets AS (
  INSERT INTO document_buckets (bucket, collection, key)
  SELECT * FROM unnest($68::text[], $69::text[], $70::text[])
  WHERE EXISTS (SELECT FROM fence)
  ON CONFLICT DO NOTHING
), bucket_head_rows AS (
  INSERT INTO bucket_heads (bucket, head_lsn, digest)
  SELECT * FROM unnest($71::text[], $72::bigint[], $76::bigint[])
  WHERE EXISTS (SELECT FROM fence)
  ON CONFLICT (bucket) DO UPDATE SET head_lsn = excluded.head_lsn, digest = excluded.digest
)
SELECT NOT EXISTS (SELECT FROM fence) AS fenced`;

/** What the writer last committed; the fence compares the leadership row against it. */
export interface WriterPosition {
  epoch: number;
  head: number;
  groupCommits: number;
}

/** Writes one group commit; false if the fence refused it (nothing was written). */
export async function writeGroupCommit(pool: pg.Pool, from: WriterPosition, head: number, w: GroupCommitWrites): Promise<boolean> {
  const { rows } = await pool.query<{ fenced: boolean }>({
    name: 'outpost-group-commit',
    text: WRITE_GROUP_COMMIT,
    values: [
      head,
      from.epoch,
      from.head,
      from.groupCommits,
      ...columns(w.log, ['lsn', 'collection', 'key', 'op', 'value', 'hlc', 'origin', 'incarnation', 'seq', 'committed_at', 'digest']),
      ...columns(w.documents, ['collection', 'key', 'value', 'deleted', 'version', 'hlc', 'origin', 'field_hlcs']),
      ...columns(w.collectionHeads, ['name', 'headLsn']),
      ...columns(w.lastSeqs, ['agentId', 'incarnation', 'lastSeq', 'updatedAt']),
      ...columns(w.outcomes, ['agentId', 'incarnation', 'seq', 'outcome', 'lsn', 'reason', 'detail', 'digest', 'at']),
      ...columns(w.committedRuns, ['agentId', 'incarnation', 'firstSeq', 'lastSeq', 'firstLsn']),
      ...columns(w.conflicts.map(conflictRow), [
        'collection',
        'key',
        'policy',
        'reason',
        'detail',
        'loser_origin',
        'loser_incarnation',
        'loser_seq',
        'loser_op',
        'loser_value',
        'loser_hlc',
        'winner_lsn',
        'winner_origin',
        'winner_hlc',
        'winner_value',
        'at',
      ]),
      ...columns(w.log, ['buckets']),
      ...columns(w.documents, ['buckets']),
      ...columns(w.logBuckets, ['bucket', 'lsn', 'left']),
      ...columns(w.removedDocumentBuckets, ['bucket', 'collection', 'key']),
      ...columns(w.addedDocumentBuckets, ['bucket', 'collection', 'key']),
      ...columns(w.bucketHeads, ['bucket', 'headLsn']),
      ...columns(w.log, ['collection_digest']),
      ...columns(w.documents, ['hash']),
      ...columns(w.collectionHeads, ['digest']),
      ...columns(w.bucketHeads, ['digest']),
    ],
  });
  return !rows[0]!.fenced;
}

/** Rows to one array per column, in the order the statement's unnest takes them. */
function columns<R, K extends keyof R>(rows: readonly R[], keys: readonly K[]): unknown[][] {
  return keys.map((key) => rows.map((row) => row[key]));
}

function unique<T>(items: readonly T[], keyOf: (item: T) => string): T[] {
  const seen = new Map<string, T>();
  for (const item of items) if (!seen.has(keyOf(item))) seen.set(keyOf(item), item);
  return [...seen.values()];
}

/**
 * Why the fence refused this writer: a newer leader raised the epoch (WriterFencedError), or
 * another writer at the same epoch moved the head (ConcurrentWriterError).
 */
export async function whyFenced(db: PgPool, epoch: number, head: number): Promise<StorageFailedError> {
  const [row] = await db.query<{ epoch: number; head_lsn: number }>('SELECT epoch, head_lsn FROM leadership');
  return row!.epoch !== epoch
    ? new WriterFencedError(db.where, epoch, row!.epoch)
    : new ConcurrentWriterError(db.where, head, row!.head_lsn);
}
