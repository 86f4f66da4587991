import Database from 'better-sqlite3';
import { closeSync, fdatasyncSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseTooNewError, StorageFailedError, StorageFullError } from '../../shared/errors.js';
import { DEFAULT_PARTITION } from '../../shared/topics.js';
import { AGENT_MIGRATIONS } from '../schema.js';

/**
 * The name under which a partition's value is kept in `meta` (and in settings): the default
 * partition keeps the names it had before there were partitions, so existing databases read on.
 */
export function partitionScoped(name: string, partition: string): string {
  return partition === DEFAULT_PARTITION ? name : `${name}:${partition}`;
}

/** Bytes per database page of a new agent database (see the constructor). */
export const PAGE_SIZE = 1024;

/** WAL pages after which a commit checkpoints (see the constructor). */
const WAL_CHECKPOINT_PAGES = 4000;

/**
 * The agent's SQLite database file, behind the parts of the store that share it: opened in WAL
 * mode, migrated to this software's schema, with the `meta` table of small named values and two
 * kinds of transaction. Every method is synchronous.
 *
 * Only what the hub cannot give back is fsynced (flash cards wear with every sync):
 * - `durableTransaction` (and `appTransaction`) commits with synchronous=FULL: it survives a power
 *   cut. The device's own writes, and what changes the identity under which they are sent (a
 *   new incarnation, a move to another partition), go this way.
 * - `transaction`, and a single statement outside one, commits with synchronous=NORMAL: a power
 *   cut may take it back. What the hub can send again goes this way: applied change sets with
 *   their watermark, acks, cursors, cached settings.
 *
 * The WAL is one file written in order, and SQLite's recovery keeps a prefix of its commits, so
 * a power cut takes back only the newest NORMAL commits, each whole, never a part of one: a
 * watermark never outlives the rows it covers. A durable commit fsyncs the WAL up to it, so every
 * commit before it is durable too.
 */
export class AgentDb {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #s;
  /** A durable transaction is under way (see durableTransaction). */
  #durable = false;
  /** The WAL file, opened (once, kept open until close) to make commits so far durable: see flush. */
  #wal: number | undefined;

  constructor(dataDir: string) {
    this.path = join(dataDir, 'agent.db');
    let db: Database.Database | undefined;
    try {
      mkdirSync(dataDir, { recursive: true });
      this.#db = db = new Database(this.path);
      // A commit writes each page it changed whole, and most commits here change a row or two
      // in each of a few tables: 1 KB pages write about a third of the bytes of SQLite's default 4 KB.
      // Only a new database takes it (an existing one keeps its page size).
      this.#db.pragma(`page_size = ${PAGE_SIZE}`);
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma('synchronous = NORMAL'); // FULL only around durable transactions
      this.#db.pragma('busy_timeout = 5000');
      // A checkpoint copies every page the WAL changed into the database file once: fewer, larger
      // ones copy a page changed many times (the outbox's, the cursors') fewer times. 4,000 pages
      // is a 4 MB WAL at 1 KB pages, SQLite's 4 MB at its default 4 KB.
      this.#db.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
      this.#db.pragma('cache_size = -2000'); // SQLite's default page cache (2 MB), not better-sqlite3's 16 MB: it stays resident on the device
      this.#migrate();
    } catch (cause) {
      // A database from a newer Outpost is not a storage failure: say so with its own code.
      if (cause instanceof DatabaseTooNewError) {
        db?.close();
        throw cause;
      }
      throw new StorageFailedError(this.path, 'open', { cause });
    }
    this.#s = {
      meta: this.prepare<[string], { value: string }>('SELECT value FROM meta WHERE name = ?'),
      setMeta: this.prepare<[string, string]>(
        'INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
      ),
      deleteMeta: this.prepare<[string]>('DELETE FROM meta WHERE name = ?'),
    };
  }

  #migrate(): void {
    const version = this.#db.pragma('user_version', { simple: true }) as number;
    if (version > AGENT_MIGRATIONS.length) {
      throw new DatabaseTooNewError(`the agent database ${this.path}`, version, AGENT_MIGRATIONS.length);
    }
    this.#db
      .transaction(() => {
        for (let v = version; v < AGENT_MIGRATIONS.length; v++) this.#db.exec(AGENT_MIGRATIONS[v]!);
        this.#db.pragma(`user_version = ${AGENT_MIGRATIONS.length}`);
      })
      .immediate();
  }

  prepare<P extends unknown[] = unknown[], R = unknown>(sql: string): Database.Statement<P, R> {
    return this.#db.prepare<P, R>(sql);
  }

  meta(name: string): string | undefined {
    return this.#s.meta.get(name)?.value;
  }

  setMeta(name: string, value: string): void {
    this.#s.setMeta.run(name, value);
  }

  deleteMeta(name: string): void {
    this.#s.deleteMeta.run(name);
  }

  /**
   * Runs `body` in one write transaction (BEGIN IMMEDIATE): all of it, or none of it if it
   * throws. Not fsynced: for what the hub can give back (see the class comment).
   */
  transaction<T>(body: () => T): T {
    return this.#db.transaction(body).immediate();
  }

  /** `transaction`, fsynced before it returns: it, and every commit before it, survives a power cut. */
  durableTransaction<T>(body: () => T): T {
    if (this.#db.inTransaction) {
      // Nested: only a durable outer transaction keeps the promise (its commit is the one that counts).
      if (!this.#durable) throw new Error('a durable transaction cannot run inside one that is not durable');
      return this.transaction(body);
    }
    this.#db.pragma('synchronous = FULL');
    this.#durable = true;
    try {
      return this.transaction(body);
    } finally {
      this.#durable = false;
      this.#db.pragma('synchronous = NORMAL');
    }
  }

  /**
   * Makes every commit so far survive a power cut, without writing anything: an fsync of the WAL,
   * where all of them are (a checkpoint fsyncs what it copies out of it before it lets go).
   */
  flush(): void {
    if (!this.#db.open) return;
    try {
      this.#wal ??= openSync(`${this.path}-wal`, 'r');
      fdatasyncSync(this.#wal);
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return; // no WAL yet: nothing was committed into one
      throw new StorageFailedError(this.path, 'sync', { cause });
    }
  }

  /**
   * `durableTransaction` for an app's writes, whose failure the app must be able to act on: a full
   * disk is StorageFullError, anything else StorageFailedError; either way nothing was stored.
   */
  appTransaction<T>(body: () => T): T {
    try {
      return this.durableTransaction(body);
    } catch (cause) {
      if ((cause as { code?: string }).code === 'SQLITE_FULL') throw new StorageFullError(this.path, { cause });
      throw new StorageFailedError(this.path, 'write to', { cause });
    }
  }

  /** Bytes the database uses (pages in use, free pages not counted). */
  databaseBytes(): number {
    const pages =
      (this.#db.pragma('page_count', { simple: true }) as number) - (this.#db.pragma('freelist_count', { simple: true }) as number);
    return pages * (this.#db.pragma('page_size', { simple: true }) as number);
  }

  close(): void {
    if (this.#db.open) this.#db.close();
    // Only after SQLite let go of the file: it holds no locks on the WAL, but close nothing under it.
    if (this.#wal !== undefined) closeSync(this.#wal);
    this.#wal = undefined;
  }
}
