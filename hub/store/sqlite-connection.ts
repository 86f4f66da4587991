import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseTooNewError, HubRunningError, StorageFailedError } from '../../shared/errors.js';
import { HUB_MIGRATIONS } from './sqlite-schema.js';

/**
 * The hub database file (`<dataDir>/hub.db`) behind one thin class: opened with its pragmas and
 * migrated in one place (a failure wrapped with its cause), statements prepared once and
 * reused, transactions synchronous and IMMEDIATE. WAL with synchronous=FULL: a commit the hub
 * has acknowledged survives power loss.
 */
export class SqliteConnection {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();

  constructor(dataDir: string) {
    this.path = join(dataDir, 'hub.db');
    let db: Database.Database | undefined;
    try {
      mkdirSync(dataDir, { recursive: true });
      this.#db = db = new Database(this.path);
      this.#db.pragma('busy_timeout = 5000');
      enableWal(this.#db);
      this.#db.pragma('synchronous = FULL');
      this.#db.pragma('foreign_keys = ON');
      migrate(this.#db);
    } catch (cause) {
      // A database from a newer Outpost is not a storage failure: say so with its own code.
      if (cause instanceof DatabaseTooNewError) {
        db?.close();
        throw cause;
      }
      throw new StorageFailedError(this.path, 'open', { cause });
    }
  }

  /** A new prepared statement: kept by a caller that runs it often, or run once when its SQL is built per call. */
  prepare<P extends unknown[] | object = unknown[], R = unknown>(sql: string): Database.Statement<P, R> {
    return this.#db.prepare<P, R>(sql);
  }

  /** A prepared statement, prepared once: the fleet view and dashboard ask every few seconds. */
  statement<P extends unknown[] | object = unknown[], R = unknown>(sql: string): Database.Statement<P, R> {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement as unknown as Database.Statement<P, R>;
  }

  /** Runs `fn` in one write transaction (BEGIN IMMEDIATE). `fn` must be synchronous. */
  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  /**
   * Runs `fn` in one read transaction: every statement in it reads the same state, whatever other
   * connections commit meanwhile (WAL: it blocks none of them).
   */
  reading<T>(fn: () => T): T {
    return this.#db.transaction(fn).deferred();
  }

  /**
   * Runs `fn` in one write transaction while holding the database exclusively (locking mode
   * EXCLUSIVE): it fails at once with HubRunningError if any other connection (a running hub) has
   * the database open, and no other can open it until this connection closes. For tools that
   * must work on a database no hub is using (`outpost hub restore`).
   */
  exclusively<T>(fn: () => T): T {
    this.#db.pragma('busy_timeout = 0');
    this.#db.pragma('locking_mode = EXCLUSIVE');
    try {
      return this.#db.transaction(fn).exclusive();
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_BUSY') throw new HubRunningError(this.path);
      throw error;
    } finally {
      this.#db.pragma('busy_timeout = 5000');
    }
  }

  /** Changes when another connection (e.g. `outpost hub agents revoke`) commits to this database. */
  dataVersion(): number {
    return this.#db.pragma('data_version', { simple: true }) as number;
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

/**
 * Switches the database to WAL. While another process opens the same new database (the hub of
 * another partition, reading the registry), SQLite can refuse the switch with SQLITE_BUSY at
 * once, without waiting in the busy handler: try again for a few seconds.
 */
function enableWal(db: Database.Database): void {
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() > deadline) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10); // the constructor is synchronous
    }
  }
}

function migrate(db: Database.Database): void {
  // The version is read inside the write transaction: two processes opening one database at
  // once (hubs of two partitions sharing the registry) take turns, and the second finds the
  // work done instead of running the migrations again.
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > HUB_MIGRATIONS.length) {
      throw new DatabaseTooNewError('the hub database', version, HUB_MIGRATIONS.length);
    }
    for (let v = version; v < HUB_MIGRATIONS.length; v++) db.exec(HUB_MIGRATIONS[v]!);
    db.pragma(`user_version = ${HUB_MIGRATIONS.length}`);
  }).immediate();
}
