import Database from 'better-sqlite3';
import { copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, closeSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BackupInvalidError, DatabaseTooNewError, HubRunningError } from '../shared/errors.js';
import type { Lineage } from './store/hub-store.js';
import { openHubStore, sqliteDirOf, type StoreLocation } from './store/open-store.js';
import { HUB_MIGRATIONS } from './store/sqlite-schema.js';
import { SqliteHubStore } from './store/sqlite-store.js';

/** What a restore did to the database's lineage. */
export interface RestoreMark {
  previous: Lineage;
  lineage: Lineage;
}

/**
 * Marks a database as restored from a backup by other means (PostgreSQL `pg_restore`, a SQLite
 * file put in place by hand): a new lineage, parting at its head, which tells every agent to
 * reconcile. Refuses with HubRunningError while a hub has it open (SQLite) or leads its
 * partition (PostgreSQL).
 */
export async function markRestored(location: StoreLocation): Promise<RestoreMark> {
  const store = await openHubStore(location);
  try {
    const previous = store.lineage;
    return { previous, lineage: await store.markRestored() };
  } finally {
    await store.close();
  }
}

/**
 * Puts a SQLite backup in place of a partition's database (`outpost hub restore from`), with
 * the hub stopped: the backup is checked first (an intact hub database of this or an older
 * Outpost), copied to a staging directory beside the database and marked restored there, then
 * renamed over it, the old `-wal` and `-shm` removed (a stale WAL would be replayed onto the
 * backup). Marked before it is put in place: a crash half way leaves either the old database or
 * the marked backup, never the backup under its old lineage.
 */
export async function restoreFromBackup(backupFile: string, dataDir: string, partition?: string): Promise<RestoreMark> {
  checkBackup(backupFile);
  const dir = sqliteDirOf(dataDir, partition);
  const target = join(dir, 'hub.db');
  if (existsSync(target)) assertUnused(target);
  const staging = join(dir, '.restoring');
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const staged = join(staging, 'hub.db');
  copyFileSync(backupFile, staged);
  const store = new SqliteHubStore(staging);
  let mark: RestoreMark;
  try {
    const previous = store.lineage;
    mark = { previous, lineage: await store.markRestored() };
  } finally {
    await store.close(); // checkpoints its WAL into the file
  }
  syncFile(staged);
  rmSync(`${target}-wal`, { force: true });
  rmSync(`${target}-shm`, { force: true });
  renameSync(staged, target);
  syncFile(dir);
  rmSync(staging, { recursive: true, force: true });
  return mark;
}

/** An intact SQLite hub database that this Outpost can open, or BackupInvalidError. */
function checkBackup(file: string): void {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > HUB_MIGRATIONS.length) throw new DatabaseTooNewError(`the backup ${file}`, version, HUB_MIGRATIONS.length);
    const problems = (db.pragma('integrity_check') as Array<{ integrity_check: string }>).map((r) => r.integrity_check);
    if (problems.join() !== 'ok')
      throw new BackupInvalidError(file, `SQLite's integrity check failed (${problems.slice(0, 3).join('; ')})`);
    const log = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'log'").get() as { n: number };
    if (version === 0 || log.n === 0) throw new BackupInvalidError(file, 'it is not an Outpost hub database');
  } catch (error) {
    if (error instanceof BackupInvalidError || error instanceof DatabaseTooNewError) throw error;
    throw new BackupInvalidError(file, (error as Error).message, { cause: error });
  } finally {
    db?.close();
  }
}

/** HubRunningError if any connection (a running hub) has the database open: it cannot be taken exclusively. */
function assertUnused(path: string): void {
  const db = new Database(path, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 0');
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('ROLLBACK');
  } catch (error) {
    if ((error as { code?: string }).code === 'SQLITE_BUSY') throw new HubRunningError(path);
    throw error;
  } finally {
    db.close();
  }
}

/** Flushes a file (or a directory's entries) to disk. */
function syncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
