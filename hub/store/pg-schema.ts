import type pg from 'pg';
import { DEFAULT_PARTITION } from '../../shared/topics.js';
import { ConfigError, DatabaseTooNewError } from '../../shared/errors.js';

/**
 * The PostgreSQL hub database's migrations, in order; `schema_migrations` records which have
 * run. Append only: a released migration is never edited.
 *
 * Keys and collection names are `COLLATE "C"` so that every ORDER BY and range comparison
 * follows the UTF-8 byte order SQLite uses: snapshot pages and listings page identically on
 * both stores. Values are the same CBOR bytes SQLite stores; HLCs are text; times are ms epoch.
 */
export const PG_MIGRATIONS: readonly string[] = [
  // 1: the whole schema of SQLite migrations 1-7, plus the writer's leadership row
  `
CREATE TABLE log (
  lsn          bigint PRIMARY KEY,
  collection   text COLLATE "C" NOT NULL,
  key          text COLLATE "C" NOT NULL,
  op           text NOT NULL CHECK (op IN ('put', 'del')),
  value        bytea,
  hlc          text NOT NULL,
  origin       text NOT NULL,
  incarnation  text,
  seq          bigint,
  committed_at bigint NOT NULL,
  digest       text
);
CREATE INDEX log_by_collection ON log (collection, lsn);
CREATE TABLE documents (
  collection text COLLATE "C" NOT NULL,
  key        text COLLATE "C" NOT NULL,
  value      bytea,
  deleted    boolean NOT NULL DEFAULT false,
  version    bigint NOT NULL,
  hlc        text NOT NULL,
  origin     text NOT NULL,
  field_hlcs bytea,
  PRIMARY KEY (collection, key)
);
CREATE TABLE collections (
  name     text COLLATE "C" PRIMARY KEY,
  head_lsn bigint NOT NULL
);
CREATE TABLE agent_sequences (
  agent_id    text NOT NULL,
  incarnation text NOT NULL,
  last_seq    bigint NOT NULL,
  updated_at  bigint NOT NULL,
  PRIMARY KEY (agent_id, incarnation)
);
CREATE TABLE outcomes (
  agent_id    text NOT NULL,
  incarnation text NOT NULL,
  seq         bigint NOT NULL,
  outcome     text NOT NULL,
  lsn         bigint,
  reason      text,
  detail      text,
  digest      text,
  at          bigint,
  PRIMARY KEY (agent_id, incarnation, seq)
);
CREATE INDEX outcomes_by_kind ON outcomes (outcome, at);
CREATE TABLE committed_runs (
  agent_id    text NOT NULL,
  incarnation text NOT NULL,
  first_seq   bigint NOT NULL,
  last_seq    bigint NOT NULL,
  first_lsn   bigint NOT NULL,
  PRIMARY KEY (agent_id, incarnation, first_seq)
);
CREATE TABLE conflicts (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  collection        text COLLATE "C" NOT NULL,
  key               text COLLATE "C" NOT NULL,
  policy            text NOT NULL,
  reason            text NOT NULL,
  detail            text,
  loser_origin      text NOT NULL,
  loser_incarnation text,
  loser_seq         bigint,
  loser_op          text NOT NULL,
  loser_value       bytea,
  loser_hlc         text NOT NULL,
  winner_lsn        bigint NOT NULL,
  winner_origin     text NOT NULL,
  winner_hlc        text NOT NULL,
  winner_value      bytea,
  at                bigint NOT NULL
);
CREATE INDEX conflicts_by_document ON conflicts (collection, key, id);
CREATE TABLE agent_credentials (
  agent_id       text COLLATE "C" PRIMARY KEY,
  token_hash     text NOT NULL,
  created_at     bigint NOT NULL,
  revoked_at     bigint,
  mosquitto_hash text
);
-- Counters of the hub: how far retention pruned the log, and a version bumped in the same
-- transaction as every credential change (other hub processes poll it).
CREATE TABLE hub_meta (
  name  text PRIMARY KEY,
  value bigint NOT NULL
);
INSERT INTO hub_meta (name, value) VALUES ('pruned_through', 0), ('credentials_version', 0);
-- The writer's claim, one row. Every group commit updates it only if epoch, head_lsn and
-- group_commits are still what this writer last saw: a leader deposed by a higher epoch is
-- fenced off, and a second writer on the same database cannot commit on stale state.
CREATE TABLE leadership (
  singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  epoch         bigint NOT NULL,
  head_lsn      bigint NOT NULL,
  group_commits bigint NOT NULL
);
INSERT INTO leadership (epoch, head_lsn, group_commits) VALUES (0, 0, 0);
`,
  // 2: as SQLite migration 8: retention removes dedup state as old as the log it prunes
  `
CREATE INDEX committed_runs_by_lsn ON committed_runs (first_lsn);
CREATE INDEX outcomes_by_age ON outcomes (at);
`,
  // 3: as SQLite migration 9: the database's lineage (a table of its own: hub_meta holds numbers),
  // and the versions agents report that a restore lost, once each, with who reported them
  `
CREATE TABLE lineage (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  id        text NOT NULL,
  fork      bigint NOT NULL
);
INSERT INTO lineage (id, fork) VALUES (replace(gen_random_uuid()::text, '-', ''), 0);
CREATE TABLE lost_documents (
  lineage         text NOT NULL,
  collection      text COLLATE "C" NOT NULL,
  key             text COLLATE "C" NOT NULL,
  version         bigint NOT NULL,
  fork            bigint NOT NULL,
  op              text NOT NULL CHECK (op IN ('put', 'del')),
  value           bytea,
  hlc             text NOT NULL,
  origin          text NOT NULL,
  reported_at     bigint NOT NULL,
  reapplied_at    bigint,
  reapply_outcome text,
  reapply_lsn     bigint,
  reapply_reason  text,
  PRIMARY KEY (lineage, collection, key, version)
);
CREATE INDEX lost_documents_by_report ON lost_documents (reported_at);
CREATE TABLE lost_reporters (
  lineage    text NOT NULL,
  collection text COLLATE "C" NOT NULL,
  key        text COLLATE "C" NOT NULL,
  version    bigint NOT NULL,
  agent_id   text NOT NULL,
  at         bigint NOT NULL,
  PRIMARY KEY (lineage, collection, key, version, agent_id)
);
`,
  // 4: as SQLite migration 10: agents' labels, and a version bumped in the same transaction as
  // every change of them (hubs poll it, as they poll credentials_version)
  `
CREATE TABLE agent_labels (
  agent_id   text COLLATE "C" PRIMARY KEY,
  labels     jsonb NOT NULL,
  updated_at bigint NOT NULL
);
INSERT INTO hub_meta (name, value) VALUES ('labels_version', 0);
`,
  // 5: as SQLite migration 12: scope buckets. A scoped change keeps the buckets its document is
  // in after it (a JSON array; NULL: unscoped), as the document does; log_buckets indexes each
  // bucket's log (left_bucket: the change took its document out, and reads as \`out\` there) and
  // goes with the log, found by LSN; document_buckets holds each document's current buckets (its
  // old rows are found from documents.buckets); bucket_heads stays through retention.
  `
ALTER TABLE log ADD COLUMN buckets text;
ALTER TABLE documents ADD COLUMN buckets text;
CREATE TABLE log_buckets (
  bucket      text COLLATE "C" NOT NULL,
  lsn         bigint NOT NULL,
  left_bucket boolean NOT NULL,
  PRIMARY KEY (bucket, lsn)
);
CREATE INDEX log_buckets_by_lsn ON log_buckets (lsn);
CREATE TABLE document_buckets (
  bucket     text COLLATE "C" NOT NULL,
  collection text COLLATE "C" NOT NULL,
  key        text COLLATE "C" NOT NULL,
  PRIMARY KEY (bucket, collection, key)
);
CREATE TABLE bucket_heads (
  bucket   text COLLATE "C" PRIMARY KEY,
  head_lsn bigint NOT NULL
);
`,
  // 6: as SQLite migration 13: a document's buckets before the hub's rules last changed them,
  // kept until it is written again (prior_buckets), so that a device holding it through one of
  // them is told its new buckets rather than sent it again; and the rules each scoped collection
  // was last indexed with, with the head when that was done.
  `
ALTER TABLE documents ADD COLUMN prior_buckets text;
CREATE TABLE scope_rules (
  collection text COLLATE "C" PRIMARY KEY,
  rules      text NOT NULL,
  since      bigint NOT NULL
);
`,
  // 7: as SQLite migration 14: a rebucket under way, from its first chunk until the
  // transaction that records its rules (NULL rules: unscoping).
  `
CREATE TABLE scope_rebuckets (
  collection text COLLATE "C" PRIMARY KEY,
  rules      text
);
`,
  // 8: as SQLite migration 15: the LSN from which each device may read a bucket's log.
  `
CREATE TABLE bucket_joins (
  agent_id text COLLATE "C" NOT NULL,
  bucket   text COLLATE "C" NOT NULL,
  lsn      bigint NOT NULL,
  PRIMARY KEY (agent_id, bucket)
);
`,
  // 9: as SQLite migration 16: content digests. Each document's hash, each collection's digest,
  // each log entry's collection digest after it (NULL before this); documents written before are
  // hashed when the store opens, then collections summed, and only then 'digests_pending' goes
  // (pg-digests.ts backfillDigests).
  `
ALTER TABLE documents ADD COLUMN hash bigint;
ALTER TABLE collections ADD COLUMN digest bigint NOT NULL DEFAULT 0;
ALTER TABLE log ADD COLUMN collection_digest bigint;
INSERT INTO hub_meta (name, value) VALUES ('digests_pending', 1);
`,
  // 10: as SQLite migration 17: each scope bucket's digest, kept with its head; a database from
  // before has them counted when the store opens, then 'bucket_digests_pending' goes
  // (pg-bucket-digests.ts countBucketDigests).
  `
ALTER TABLE bucket_heads ADD COLUMN digest bigint NOT NULL DEFAULT 0;
INSERT INTO hub_meta (name, value) VALUES ('bucket_digests_pending', 1);
`,
  // 11: as SQLite migration 18: the fingerprint of the token last verified against each credential.
  `
ALTER TABLE agent_credentials ADD COLUMN verified_fingerprint text;
`,
  // 12: blob content (PgContentStore), which a SQLite hub keeps in files instead: one row per
  // content (its size, whether it is complete, when it was last touched) and its chunks. Every
  // schema gets the tables; the hub keeps content in the default schema's, once for all partitions.
  `
CREATE TABLE blob_contents (
  hash       text COLLATE "C" PRIMARY KEY,
  size       bigint NOT NULL,
  complete   boolean NOT NULL DEFAULT false,
  touched_at bigint NOT NULL
);
CREATE TABLE blob_chunks (
  hash  text COLLATE "C" NOT NULL REFERENCES blob_contents (hash) ON DELETE CASCADE,
  idx   integer NOT NULL,
  bytes bytea NOT NULL,
  PRIMARY KEY (hash, idx)
);
`,
  // 13: blob content in an object store (PgContentStore with ObjectChunks): which object holds each chunk (a
  // key of its own per write, so that an object is never overwritten nor removed while named),
  // and the objects to remove. An object is listed there before it is written and struck off in
  // the transaction that names it, so that a crash in between leaves nothing behind unnamed.
  `
CREATE TABLE blob_chunk_objects (
  hash       text COLLATE "C" NOT NULL REFERENCES blob_contents (hash) ON DELETE CASCADE,
  idx        integer NOT NULL,
  object_key text COLLATE "C" NOT NULL,
  PRIMARY KEY (hash, idx)
);
CREATE TABLE blob_object_removals (
  object_key text COLLATE "C" PRIMARY KEY,
  since      bigint NOT NULL
);
CREATE INDEX blob_object_removals_since ON blob_object_removals (since);
`,
];

/** Arbitrary but fixed: the advisory lock every hub process takes to migrate (and to backfill what a migration left). */
export const MIGRATION_LOCK = 0x6f757470; // "outp"

/**
 * The PostgreSQL schema of a partition's tables: `public` (undefined: the connection's default)
 * for the default partition, so that a database from before partitions is the default
 * partition's as it is; `outpost_p_<partition>` for another.
 */
export function partitionSchema(partition: string): string | undefined {
  if (partition === DEFAULT_PARTITION) return undefined;
  const schema = `outpost_p_${partition}`;
  // PostgreSQL would silently truncate a longer name, and two partitions could share a schema.
  if (Buffer.byteLength(schema) > 63) {
    throw new ConfigError(`partition name ${partition} is too long for a PostgreSQL schema (${schema}): use at most 53 characters`);
  }
  return schema;
}

/** Connection settings that put a connection's tables in a partition's schema (nothing for the default). */
export function schemaConnectionOptions(schema: string | undefined): { options?: string } {
  // Partition names are [a-z0-9_-]: quoted, the identifier needs no escaping, and `-` is allowed.
  return schema === undefined ? {} : { options: `-c search_path="${schema}"` };
}

/**
 * Brings the schema up to date in one transaction under a transaction-scoped advisory lock, so
 * that hubs (or CLI commands) starting at once migrate one after the other: the second finds
 * the work done. Refuses a database migrated by a newer Outpost. `schema` (a partition's, whose
 * name the connection's search_path already holds) is created first if it does not exist. The
 * lock is one for every schema: migrations of different partitions take turns too, which costs
 * nothing worth avoiding and keeps CREATE SCHEMA from racing.
 */
export async function migrate(client: pg.ClientBase, schema?: string): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    if (schema !== undefined) await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)');
    const { rows } = await client.query<{ version: number | null }>('SELECT max(version) AS version FROM schema_migrations');
    const version = rows[0]?.version ?? 0;
    if (version > PG_MIGRATIONS.length) {
      throw new DatabaseTooNewError("the hub's PostgreSQL database", version, PG_MIGRATIONS.length);
    }
    for (let v = version; v < PG_MIGRATIONS.length; v++) {
      await client.query(PG_MIGRATIONS[v]!);
      await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [v + 1, Date.now()]);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
