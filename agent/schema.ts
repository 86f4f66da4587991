/**
 * The triggers that keep each collection's digest in `table` (one row a collection, `digest` the
 * sum mod 2^52 of its held documents' hashes): migration 9 made them on `digests`, migration 12
 * again on `collections`.
 */
const digestTriggers = (table: string): string => `CREATE TRIGGER documents_digest_insert AFTER INSERT ON documents
WHEN NEW.evicted = 0 AND NEW.hash IS NOT NULL
BEGIN
  INSERT INTO ${table} (collection, digest) VALUES (NEW.collection, (NEW.hash % 4503599627370496 + 4503599627370496) % 4503599627370496)
  ON CONFLICT (collection) DO UPDATE SET digest = (digest + excluded.digest) % 4503599627370496;
END;
CREATE TRIGGER documents_digest_delete AFTER DELETE ON documents
WHEN OLD.evicted = 0 AND OLD.hash IS NOT NULL
BEGIN
  INSERT INTO ${table} (collection, digest)
  VALUES (OLD.collection, (4503599627370496 - (OLD.hash % 4503599627370496 + 4503599627370496) % 4503599627370496) % 4503599627370496)
  ON CONFLICT (collection) DO UPDATE SET digest = (digest + excluded.digest) % 4503599627370496;
END;
CREATE TRIGGER documents_digest_update AFTER UPDATE OF hash, evicted ON documents
WHEN OLD.collection = NEW.collection AND (NEW.hash IS NOT OLD.hash OR NEW.evicted IS NOT OLD.evicted)
BEGIN
  INSERT INTO ${table} (collection, digest)
  VALUES (NEW.collection, (
    (CASE WHEN NEW.evicted = 0 THEN coalesce(NEW.hash, 0) ELSE 0 END % 4503599627370496 + 4503599627370496) % 4503599627370496
    - (CASE WHEN OLD.evicted = 0 THEN coalesce(OLD.hash, 0) ELSE 0 END % 4503599627370496 + 4503599627370496) % 4503599627370496
    + 4503599627370496) % 4503599627370496)
  ON CONFLICT (collection) DO UPDATE SET digest = (digest + excluded.digest) % 4503599627370496;
END;
-- Only by hand: the software never moves a document to another collection.
CREATE TRIGGER documents_digest_move AFTER UPDATE OF collection ON documents
WHEN OLD.collection <> NEW.collection
BEGIN
  INSERT INTO ${table} (collection, digest)
  VALUES (OLD.collection,
    (4503599627370496 - (CASE WHEN OLD.evicted = 0 THEN coalesce(OLD.hash, 0) ELSE 0 END % 4503599627370496 + 4503599627370496) % 4503599627370496)
    % 4503599627370496)
  ON CONFLICT (collection) DO UPDATE SET digest = (digest + excluded.digest) % 4503599627370496;
  INSERT INTO ${table} (collection, digest)
  VALUES (NEW.collection, (CASE WHEN NEW.evicted = 0 THEN coalesce(NEW.hash, 0) ELSE 0 END % 4503599627370496 + 4503599627370496) % 4503599627370496)
  ON CONFLICT (collection) DO UPDATE SET digest = (digest + excluded.digest) % 4503599627370496;
END;
`;

/** The agent database's migrations; `user_version` counts how many have run. Append only. */
export const AGENT_MIGRATIONS: readonly string[] = [
  // 1: meta, replica, outbox, cursors, rejections
  `
CREATE TABLE meta (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
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
-- Pending writes. acked_lsn is set when the hub committed the write but the replica does not
-- hold that version yet; the row then only keeps reads from going backwards.
CREATE TABLE outbox (
  seq        INTEGER PRIMARY KEY,
  collection TEXT NOT NULL,
  key        TEXT NOT NULL,
  op         TEXT NOT NULL CHECK (op IN ('put', 'patch', 'del')),
  value      BLOB,
  hlc        TEXT NOT NULL,
  base       INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  acked_lsn  INTEGER
);
CREATE INDEX outbox_by_document ON outbox (collection, key, seq);
CREATE TABLE cursors (
  collection  TEXT PRIMARY KEY,
  applied_lsn INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE rejections (
  seq        INTEGER PRIMARY KEY,
  collection TEXT NOT NULL,
  key        TEXT NOT NULL,
  op         TEXT NOT NULL,
  value      BLOB,
  outcome    TEXT NOT NULL,
  reason     TEXT,
  detail     TEXT,
  at         INTEGER NOT NULL
);
`,
  // 2: writes that ask for replica acknowledgements
  `ALTER TABLE outbox ADD COLUMN rep INTEGER;`,
  // 3: rejections keep the incarnation they belong to (a new incarnation reuses seqs)
  `
CREATE TABLE rejections_v3 (
  id          INTEGER PRIMARY KEY,
  incarnation TEXT NOT NULL,
  seq         INTEGER NOT NULL,
  collection  TEXT NOT NULL,
  key         TEXT NOT NULL,
  op          TEXT NOT NULL,
  value       BLOB,
  outcome     TEXT NOT NULL,
  reason      TEXT,
  detail      TEXT,
  at          INTEGER NOT NULL
);
INSERT INTO rejections_v3 (incarnation, seq, collection, key, op, value, outcome, reason, detail, at)
  SELECT (SELECT value FROM meta WHERE name = 'incarnation'), seq, collection, key, op, value, outcome, reason, detail, at
  FROM rejections ORDER BY seq;
DROP TABLE rejections;
ALTER TABLE rejections_v3 RENAME TO rejections;
`,
  // 4: writes given up before upload (expired, dropped on overflow) keep their seq, without value
  `ALTER TABLE outbox ADD COLUMN skipped TEXT;`,
  // 5: one sequence space per partition ("lane"): the outbox is keyed by (lane, seq)
  `
CREATE TABLE outbox_v5 (
  lane       TEXT NOT NULL DEFAULT 'default',
  seq        INTEGER NOT NULL,
  collection TEXT NOT NULL,
  key        TEXT NOT NULL,
  op         TEXT NOT NULL CHECK (op IN ('put', 'patch', 'del')),
  value      BLOB,
  hlc        TEXT NOT NULL,
  base       INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  acked_lsn  INTEGER,
  rep        INTEGER,
  skipped    TEXT,
  PRIMARY KEY (lane, seq)
);
INSERT INTO outbox_v5 (lane, seq, collection, key, op, value, hlc, base, created_at, acked_lsn, rep, skipped)
  SELECT 'default', seq, collection, key, op, value, hlc, base, created_at, acked_lsn, rep, skipped FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v5 RENAME TO outbox;
CREATE INDEX outbox_by_document ON outbox (collection, key, seq);
`,
  // 6: what waits to go up, and what waits for its version to reach the replica, each found
  // without reading the rest of the outbox (a device back from a long time offline holds a lot)
  `
CREATE INDEX outbox_pending ON outbox (collection, created_at) WHERE acked_lsn IS NULL AND skipped IS NULL;
CREATE INDEX outbox_confirmed ON outbox (collection, key, acked_lsn) WHERE acked_lsn IS NOT NULL;
`,
  // 7: what a restored hub lost, as this device held it, kept until the hub acknowledges the report
  // (AUTOINCREMENT: a late acknowledgement must never match a later report's ids)
  `
CREATE TABLE lost_reports (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  lane       TEXT NOT NULL,
  lineage    TEXT NOT NULL,
  fork       INTEGER NOT NULL,
  collection TEXT NOT NULL,
  key        TEXT NOT NULL,
  version    INTEGER NOT NULL,
  op         TEXT NOT NULL CHECK (op IN ('put', 'del')),
  value      BLOB,
  hlc        TEXT NOT NULL,
  origin     TEXT NOT NULL,
  at         INTEGER NOT NULL
);
CREATE INDEX lost_reports_by_lane ON lost_reports (lane, id);
`,
  // 8: scopes. Each document of a scoped collection records the buckets it is in (JSON ids);
  // one that left the device's scope is kept as an evicted stub (its version, no value), so an
  // older change arriving late cannot bring it back. Each bucket held has a cursor, and a
  // snapshot's progress while the device joins it.
  `
ALTER TABLE documents ADD COLUMN buckets TEXT;
ALTER TABLE documents ADD COLUMN evicted INTEGER NOT NULL DEFAULT 0;
CREATE TABLE scope_buckets (
  lane     TEXT NOT NULL,
  bucket   TEXT NOT NULL,
  cursor   INTEGER NOT NULL DEFAULT 0,
  snapshot TEXT,
  PRIMARY KEY (lane, bucket)
);
`,
  // 9: content digests (shared/digest.ts). Each document held has its state's hash (NULL on an
  // evicted stub: it is not held), and each collection the sum of its documents' hashes mod 2^52.
  // Triggers keep the sum, whatever writes the rows (an apply, an eviction, a repair, an operator
  // with the sqlite3 tool), at O(1) per row. Each hash is taken mod 2^52 (4503599627370496) into
  // [0, 2^52) first, so no sum of two reaches 2^63 whatever a row holds. Rows written before have no hash: the store
  // computes them at open (hash-backfill.ts), found through the partial index.
  `
ALTER TABLE documents ADD COLUMN hash INTEGER;
CREATE INDEX documents_unhashed ON documents (collection, key) WHERE hash IS NULL AND evicted = 0;
CREATE TABLE digests (
  collection TEXT PRIMARY KEY,
  digest     INTEGER NOT NULL
) WITHOUT ROWID;
${digestTriggers('digests')}`,
  // 10: the digest of each scope bucket (shared/digest.ts): the sum mod 2^52 of the hashes of the
  // documents held whose stored buckets name it (tombstones included, evicted stubs not), as the
  // hub keeps it per bucket. Kept by triggers like the collections' digests (migration 9), for
  // every bucket a row names: its JSON list read with json_each (a list that is not valid JSON, as
  // a hand edit might leave, counts nowhere rather than failing every write of the row; a bucket
  // named twice counts once). An update that changes the hash, the eviction or the buckets takes
  // the row out of the buckets it named and puts it in those it names, so a hash backfilled later
  // (hash-backfill.ts) is counted then. Filled here from the rows already held.
  `
CREATE TABLE bucket_digests (
  bucket TEXT PRIMARY KEY,
  digest INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO bucket_digests (bucket, digest)
SELECT bucket, counted FROM (
  SELECT DISTINCT d.collection, d.key, b.value AS bucket, (d.hash % 4503599627370496 + 4503599627370496) % 4503599627370496 AS counted
  FROM documents d, json_each(CASE WHEN json_valid(d.buckets) THEN d.buckets ELSE '[]' END) b
  WHERE d.evicted = 0 AND d.hash IS NOT NULL AND d.buckets IS NOT NULL AND b.type = 'text'
) WHERE true
ON CONFLICT (bucket) DO UPDATE SET digest = (digest + excluded.digest) % 4503599627370496;
CREATE TRIGGER documents_bucket_digest_insert AFTER INSERT ON documents
WHEN NEW.evicted = 0 AND NEW.hash IS NOT NULL AND NEW.buckets IS NOT NULL
BEGIN
  INSERT INTO bucket_digests (bucket, digest)
  SELECT DISTINCT value, (NEW.hash % 4503599627370496 + 4503599627370496) % 4503599627370496
  FROM json_each(CASE WHEN json_valid(NEW.buckets) THEN NEW.buckets ELSE '[]' END) WHERE type = 'text'
  ON CONFLICT (bucket) DO UPDATE SET digest = (digest + excluded.digest) % 4503599627370496;
END;
CREATE TRIGGER documents_bucket_digest_delete AFTER DELETE ON documents
WHEN OLD.evicted = 0 AND OLD.hash IS NOT NULL AND OLD.buckets IS NOT NULL
BEGIN
  INSERT INTO bucket_digests (bucket, digest)
  SELECT DISTINCT value, (4503599627370496 - (OLD.hash % 4503599627370496 + 4503599627370496) % 4503599627370496) % 4503599627370496
  FROM json_each(CASE WHEN json_valid(OLD.buckets) THEN OLD.buckets ELSE '[]' END) WHERE type = 'text'
  ON CONFLICT (bucket) DO UPDATE SET digest = (digest + excluded.digest) % 4503599627370496;
END;
CREATE TRIGGER documents_bucket_digest_update AFTER UPDATE OF hash, evicted, buckets ON documents
WHEN NEW.hash IS NOT OLD.hash OR NEW.evicted IS NOT OLD.evicted OR NEW.buckets IS NOT OLD.buckets
BEGIN
  INSERT INTO bucket_digests (bucket, digest)
  SELECT DISTINCT value, (4503599627370496 - (OLD.hash % 4503599627370496 + 4503599627370496) % 4503599627370496) % 4503599627370496
  FROM json_each(CASE WHEN json_valid(OLD.buckets) THEN OLD.buckets ELSE '[]' END)
  WHERE type = 'text' AND OLD.evicted = 0 AND OLD.hash IS NOT NULL
  ON CONFLICT (bucket) DO UPDATE SET digest = (digest + excluded.digest) % 4503599627370496;
  INSERT INTO bucket_digests (bucket, digest)
  SELECT DISTINCT value, (NEW.hash % 4503599627370496 + 4503599627370496) % 4503599627370496
  FROM json_each(CASE WHEN json_valid(NEW.buckets) THEN NEW.buckets ELSE '[]' END)
  WHERE type = 'text' AND NEW.evicted = 0 AND NEW.hash IS NOT NULL
  ON CONFLICT (bucket) DO UPDATE SET digest = (digest + excluded.digest) % 4503599627370496;
END;
`,
  // 11: a partition's next seq is one past its last outbox row (Partitions.nextSeqOf), so an
  // append writes no meta row. Only when the last row of a partition leaves does its seq + 1 go
  // to meta, whatever deletes it, in the delete's own transaction: the next write of that
  // sequence can then never take a seq the hub already has. The value only grows: a new
  // incarnation, which starts its sequence over, sets it directly.
  `
CREATE TRIGGER outbox_keeps_next_seq AFTER DELETE ON outbox
WHEN NOT EXISTS (SELECT 1 FROM outbox WHERE lane = OLD.lane AND seq > OLD.seq)
BEGIN
  INSERT INTO meta (name, value)
  VALUES (CASE OLD.lane WHEN 'default' THEN 'next_seq' ELSE 'next_seq:' || OLD.lane END, OLD.seq + 1)
  ON CONFLICT (name) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER));
END;
`,
  // 12: a collection's cursor and digest in one row (`collections`), which every change set
  // applied writes both of: one page a commit instead of two, on a device's flash. A NULL
  // applied_lsn is no cursor (a collection known only by its digest). The digest triggers of
  // migration 9 are made again to keep the sum here.
  `
CREATE TABLE collections (
  collection  TEXT PRIMARY KEY,
  applied_lsn INTEGER,
  digest      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO collections (collection, applied_lsn, digest)
  SELECT collection, max(applied_lsn), max(digest) FROM (
    SELECT collection, applied_lsn, 0 AS digest FROM cursors
    UNION ALL
    SELECT collection, NULL, digest FROM digests
  ) GROUP BY collection;
DROP TRIGGER documents_digest_insert;
DROP TRIGGER documents_digest_delete;
DROP TRIGGER documents_digest_update;
DROP TRIGGER documents_digest_move;
DROP TABLE cursors;
DROP TABLE digests;
${digestTriggers('collections')}`,
  // 13: the hub clock of the message that taught this device each part of what it has applied:
  // a collection's cursor (`collections.heard_hlc`), an acknowledged write (`outbox.acked_hlc`)
  // and, in meta, a partition's watermark. A hub status is news of a restore only if it is newer
  // than that (RestoreWatch), and a restart must not forget it: a status delivered late, after
  // changes the same hub committed after it, would otherwise look like a restore. Each is written
  // in the row its LSN already writes, so no commit writes a page more.
  `
ALTER TABLE collections ADD COLUMN heard_hlc TEXT;
ALTER TABLE outbox ADD COLUMN acked_hlc TEXT;
`,
  // 14: the outbox's newest writes as batches, one row per append and partition (OutboxBatches):
  // a write the hub simply commits never needs a row of its own, in a table indexed three ways.
  // The next seq is then one past the last of either form, and kept in meta when the last of
  // both leaves (migration 11, for both forms).
  `
CREATE TABLE outbox_batches (
  lane       TEXT NOT NULL,
  first_seq  INTEGER NOT NULL,
  last_seq   INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  writes     BLOB NOT NULL,
  PRIMARY KEY (lane, first_seq)
) WITHOUT ROWID;
DROP TRIGGER outbox_keeps_next_seq;
CREATE TRIGGER outbox_keeps_next_seq AFTER DELETE ON outbox
WHEN NOT EXISTS (SELECT 1 FROM outbox WHERE lane = OLD.lane AND seq > OLD.seq)
  AND NOT EXISTS (SELECT 1 FROM outbox_batches WHERE lane = OLD.lane AND first_seq > OLD.seq)
BEGIN
  INSERT INTO meta (name, value)
  VALUES (CASE OLD.lane WHEN 'default' THEN 'next_seq' ELSE 'next_seq:' || OLD.lane END, OLD.seq + 1)
  ON CONFLICT (name) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER));
END;
CREATE TRIGGER outbox_batches_keep_next_seq AFTER DELETE ON outbox_batches
WHEN NOT EXISTS (SELECT 1 FROM outbox_batches WHERE lane = OLD.lane AND first_seq > OLD.first_seq)
  AND NOT EXISTS (SELECT 1 FROM outbox WHERE lane = OLD.lane AND seq > OLD.last_seq)
BEGIN
  INSERT INTO meta (name, value)
  VALUES (CASE OLD.lane WHEN 'default' THEN 'next_seq' ELSE 'next_seq:' || OLD.lane END, OLD.last_seq + 1)
  ON CONFLICT (name) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER));
END;
`,
  // 15: blobs (agent/blobs/). A blob written on the device waits in blob_uploads, content in the
  // data directory's content/, until the hub holds its content whole; only then does its document
  // join the outbox, with the HLC it was written at (a write in the outbox is never held back:
  // the writes behind it would wait). blob_cache: the content the device holds, for least
  // recently used eviction within the cache budget.
  `
CREATE TABLE blob_uploads (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  collection   TEXT NOT NULL,
  key          TEXT NOT NULL,
  sha256       TEXT NOT NULL,
  size         INTEGER NOT NULL,
  content_type TEXT NOT NULL,
  hlc          TEXT NOT NULL,
  created_at   INTEGER NOT NULL
);
CREATE INDEX blob_uploads_by_document ON blob_uploads (collection, key);
CREATE TABLE blob_cache (
  sha256  TEXT PRIMARY KEY,
  size    INTEGER NOT NULL,
  used_at INTEGER NOT NULL
) WITHOUT ROWID;
`,
];
