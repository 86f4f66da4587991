/** The hub database's migrations; `user_version` counts how many have run. Append only. */
export const HUB_MIGRATIONS: readonly string[] = [
  // 1: the log, documents, collection heads, per-agent sequences and outcomes
  `
CREATE TABLE log (
  lsn          INTEGER PRIMARY KEY,
  collection   TEXT NOT NULL,
  key          TEXT NOT NULL,
  op           TEXT NOT NULL CHECK (op IN ('put', 'del')),
  value        BLOB,
  hlc          TEXT NOT NULL,
  origin       TEXT NOT NULL,
  incarnation  TEXT,
  seq          INTEGER,
  committed_at INTEGER NOT NULL
);
CREATE INDEX log_by_collection ON log (collection, lsn);
CREATE TABLE documents (
  collection TEXT NOT NULL,
  key        TEXT NOT NULL,
  value      BLOB,
  deleted    INTEGER NOT NULL DEFAULT 0,
  version    INTEGER NOT NULL,
  hlc        TEXT NOT NULL,
  origin     TEXT NOT NULL,
  PRIMARY KEY (collection, key)
) WITHOUT ROWID;
CREATE TABLE collections (
  name     TEXT PRIMARY KEY,
  head_lsn INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE agent_sequences (
  agent_id    TEXT NOT NULL,
  incarnation TEXT NOT NULL,
  last_seq    INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (agent_id, incarnation)
) WITHOUT ROWID;
CREATE TABLE outcomes (
  agent_id    TEXT NOT NULL,
  incarnation TEXT NOT NULL,
  seq         INTEGER NOT NULL,
  outcome     TEXT NOT NULL,
  lsn         INTEGER,
  reason      TEXT,
  detail      TEXT,
  PRIMARY KEY (agent_id, incarnation, seq)
) WITHOUT ROWID;
`,
  // 2: per-field timestamps (merge policy), the conflict archive, op digests (reused sequences)
  `
ALTER TABLE documents ADD COLUMN field_hlcs BLOB;
ALTER TABLE outcomes ADD COLUMN digest TEXT;
CREATE TABLE conflicts (
  id                INTEGER PRIMARY KEY,
  collection        TEXT NOT NULL,
  key               TEXT NOT NULL,
  policy            TEXT NOT NULL,
  reason            TEXT NOT NULL,
  detail            TEXT,
  loser_origin      TEXT NOT NULL,
  loser_incarnation TEXT,
  loser_seq         INTEGER,
  loser_op          TEXT NOT NULL,
  loser_value       BLOB,
  loser_hlc         TEXT NOT NULL,
  winner_lsn        INTEGER NOT NULL,
  winner_origin     TEXT NOT NULL,
  winner_hlc        TEXT NOT NULL,
  winner_value      BLOB,
  at                INTEGER NOT NULL
);
CREATE INDEX conflicts_by_document ON conflicts (collection, key, id);
`,
  // 3: hub settings, e.g. how far the log has been pruned
  `
CREATE TABLE hub_meta (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
`,
  // 4: device credentials (tokens stored as scrypt hashes)
  `
CREATE TABLE agent_credentials (
  agent_id   TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
) WITHOUT ROWID;
`,
  // 5: when each outcome was recorded, to list recent rejections
  `
ALTER TABLE outcomes ADD COLUMN at INTEGER;
CREATE INDEX outcomes_by_kind ON outcomes (outcome, at);
`,
  // 6: committed ops remembered as runs of seqs, not a row each; their digests move to the log
  `
CREATE TABLE committed_runs (
  agent_id    TEXT NOT NULL,
  incarnation TEXT NOT NULL,
  first_seq   INTEGER NOT NULL,
  last_seq    INTEGER NOT NULL,
  first_lsn   INTEGER NOT NULL,
  PRIMARY KEY (agent_id, incarnation, first_seq)
) WITHOUT ROWID;
ALTER TABLE log ADD COLUMN digest TEXT;
`,
  // 7: a Mosquitto-format hash of each agent's token, for `outpost hub export mosquitto`
  `
ALTER TABLE agent_credentials ADD COLUMN mosquitto_hash TEXT;
`,
  // 8: retention removes dedup state as old as the log it prunes: committed runs by LSN, other outcomes by age
  `
CREATE INDEX committed_runs_by_lsn ON committed_runs (first_lsn);
CREATE INDEX outcomes_by_age ON outcomes (at);
`,
  // 9: the database's lineage (a restore from a backup starts a new one, parting at `fork`), and
  // the versions agents report that a restore lost, once each, with who reported them
  `
INSERT INTO hub_meta (name, value) VALUES ('lineage', lower(hex(randomblob(16)))), ('fork', '0')
  ON CONFLICT (name) DO NOTHING;
CREATE TABLE lost_documents (
  lineage         TEXT NOT NULL,
  collection      TEXT NOT NULL,
  key             TEXT NOT NULL,
  version         INTEGER NOT NULL,
  fork            INTEGER NOT NULL,
  op              TEXT NOT NULL CHECK (op IN ('put', 'del')),
  value           BLOB,
  hlc             TEXT NOT NULL,
  origin          TEXT NOT NULL,
  reported_at     INTEGER NOT NULL,
  reapplied_at    INTEGER,
  reapply_outcome TEXT,
  reapply_lsn     INTEGER,
  reapply_reason  TEXT,
  PRIMARY KEY (lineage, collection, key, version)
) WITHOUT ROWID;
CREATE INDEX lost_documents_by_report ON lost_documents (reported_at);
CREATE TABLE lost_reporters (
  lineage    TEXT NOT NULL,
  collection TEXT NOT NULL,
  key        TEXT NOT NULL,
  version    INTEGER NOT NULL,
  agent_id   TEXT NOT NULL,
  at         INTEGER NOT NULL,
  PRIMARY KEY (lineage, collection, key, version, agent_id)
) WITHOUT ROWID;
`,
  // 10: agents' labels (scope rules read them), a JSON object of name to value per agent; an
  // agent without labels has no row
  `
CREATE TABLE agent_labels (
  agent_id   TEXT PRIMARY KEY,
  labels     TEXT NOT NULL CHECK (json_valid(labels)),
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
`,
  // 11: a counter of label changes, bumped with each: hubs watch it rather than data_version,
  // which every commit from another connection moves (a busy partition's, say)
  `
INSERT INTO hub_meta (name, value) VALUES ('labels_version', 0);
`,
  // 12: scope buckets. A scoped change keeps the buckets its document is in after it (a JSON
  // array; NULL: unscoped), as the document does; each bucket's log and documents are indexed so
  // that one bucket is read without filtering its collection. log_buckets has a row for every
  // bucket a change is in or left (left_bucket = 1: it reads as \`out\` there), and goes with the
  // log: retention finds it by LSN. document_buckets holds each document's current buckets (its
  // old rows are found from documents.buckets). bucket_heads stays through retention.
  `
ALTER TABLE log ADD COLUMN buckets TEXT;
ALTER TABLE documents ADD COLUMN buckets TEXT;
CREATE TABLE log_buckets (
  bucket      TEXT NOT NULL,
  lsn         INTEGER NOT NULL,
  left_bucket INTEGER NOT NULL,
  PRIMARY KEY (bucket, lsn)
) WITHOUT ROWID;
CREATE INDEX log_buckets_by_lsn ON log_buckets (lsn);
CREATE TABLE document_buckets (
  bucket     TEXT NOT NULL,
  collection TEXT NOT NULL,
  key        TEXT NOT NULL,
  PRIMARY KEY (bucket, collection, key)
) WITHOUT ROWID;
CREATE TABLE bucket_heads (
  bucket   TEXT PRIMARY KEY,
  head_lsn INTEGER NOT NULL
) WITHOUT ROWID;
`,
  // 13: scope rules that change while the hub is stopped. A document whose buckets the new rules
  // changed keeps the buckets it was in before (prior_buckets, a JSON array) until it is written
  // again, so that a device holding it through one of them is told its new buckets, not sent it
  // again. scope_rules holds the rules each scoped collection was last indexed with (as the hub
  // writes them) and the head when that was done; an unscoped collection has no row.
  `
ALTER TABLE documents ADD COLUMN prior_buckets TEXT;
CREATE TABLE scope_rules (
  collection TEXT PRIMARY KEY,
  rules      TEXT NOT NULL,
  since      INTEGER NOT NULL
) WITHOUT ROWID;
`,
  // 14: a rebucket under way. Its row is written with its first chunk and removed with the
  // rules it records, so that a start after it was cut short redoes it for the rules configured
  // then, even when those are the rules served before it (a rollback). rules: the rules it was
  // bringing the collection to (NULL: unscoping it).
  `
CREATE TABLE scope_rebuckets (
  collection TEXT PRIMARY KEY,
  rules      TEXT
) WITHOUT ROWID;
`,
  // 15: where each device may read a bucket's log from: the LSN of the snapshot through which it
  // last joined the bucket (HubStore.bucketJoins). Before it, the bucket's log may hold versions
  // of documents that have since left the bucket, which the device never held.
  `
CREATE TABLE bucket_joins (
  agent_id TEXT NOT NULL,
  bucket   TEXT NOT NULL,
  lsn      INTEGER NOT NULL,
  PRIMARY KEY (agent_id, bucket)
) WITHOUT ROWID;
`,
  // 16: content digests (shared/digest.ts). Each document's hash, each collection's digest (the
  // sum of its documents' hashes), and with each log entry its collection's digest right after it
  // (NULL for entries from before). Documents written before have no hash yet: the store computes
  // them when it opens, a chunk per transaction, then sums each collection, and only then drops
  // 'digests_pending' (SqliteDigests.backfill).
  `
ALTER TABLE documents ADD COLUMN hash INTEGER;
ALTER TABLE collections ADD COLUMN digest INTEGER NOT NULL DEFAULT 0;
ALTER TABLE log ADD COLUMN collection_digest INTEGER;
INSERT INTO hub_meta (name, value) VALUES ('digests_pending', '1') ON CONFLICT (name) DO NOTHING;
`,
  // 17: each scope bucket's digest (the sum of the hashes of the documents in it, tombstones
  // included), kept with its head by every group commit and rebucket. A database from before has
  // them counted when the store opens, after the documents' hashes, and only then drops
  // 'bucket_digests_pending' (SqliteBucketDigests.count); a bucket with documents and no head yet
  // gets a row with head 0.
  `
ALTER TABLE bucket_heads ADD COLUMN digest INTEGER NOT NULL DEFAULT 0;
INSERT INTO hub_meta (name, value) VALUES ('bucket_digests_pending', '1') ON CONFLICT (name) DO NOTHING;
`,
  // 18: the SHA-256 fingerprint of the token last verified against each credential's scrypt hash
  // (hub/authenticator.ts), so that a restarted hub recognises known devices without scrypt.
  // Replacing or revoking a credential clears it.
  `
ALTER TABLE agent_credentials ADD COLUMN verified_fingerprint TEXT;
`,
];
