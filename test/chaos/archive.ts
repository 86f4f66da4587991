import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SqliteHubDb } from '../../hub/store/sqlite-db.js';

/**
 * The checker's own record of everything the hub commits, kept beside the hub's tables in the
 * same database by triggers, so that it is written in the same transactions as what it copies
 * (a rolled-back group commit leaves nothing here either). Retention prunes the log and the dedup
 * state; this copy is never pruned, so the checker can still tell a write that was committed and
 * later pruned from one that was lost, or committed twice, and what each device ever committed
 * into a scoped collection.
 */
const ARCHIVE = `
CREATE TABLE checker_log (lsn INTEGER NOT NULL, origin TEXT NOT NULL, incarnation TEXT, seq INTEGER, collection TEXT NOT NULL, key TEXT NOT NULL, value BLOB);
CREATE TRIGGER checker_log_copy AFTER INSERT ON log
BEGIN INSERT INTO checker_log VALUES (new.lsn, new.origin, new.incarnation, new.seq, new.collection, new.key, new.value); END;
CREATE TABLE checker_runs (agent_id TEXT NOT NULL, incarnation TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, first_lsn INTEGER NOT NULL);
CREATE INDEX checker_runs_by_op ON checker_runs (agent_id, incarnation, first_seq);
CREATE TRIGGER checker_runs_copy AFTER INSERT ON committed_runs
BEGIN INSERT INTO checker_runs VALUES (new.agent_id, new.incarnation, new.first_seq, new.last_seq, new.first_lsn); END;
CREATE TABLE checker_outcomes (agent_id TEXT NOT NULL, incarnation TEXT NOT NULL, seq INTEGER NOT NULL, outcome TEXT NOT NULL, lsn INTEGER, reason TEXT);
CREATE INDEX checker_outcomes_by_op ON checker_outcomes (agent_id, incarnation, seq);
CREATE TRIGGER checker_outcomes_copy AFTER INSERT ON outcomes
BEGIN INSERT INTO checker_outcomes VALUES (new.agent_id, new.incarnation, new.seq, new.outcome, new.lsn, new.reason); END;
`;

/** Creates the hub's database in `hubDir` (its own migrations) with the checker's archive, unless it exists. */
export function installArchive(hubDir: string): void {
  const file = join(hubDir, 'hub.db');
  if (existsSync(file)) return;
  new SqliteHubDb(hubDir).close();
  const db = new Database(file);
  try {
    db.exec(ARCHIVE);
  } finally {
    db.close();
  }
}

/** Whether `db` carries the checker's archive. */
export function hasArchive(db: Database.Database): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'checker_log_copy'").get() !== undefined;
}
