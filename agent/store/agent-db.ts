import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
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

/**
 * The agent's SQLite database file, behind the parts of the store that share it: opened with
 * WAL and synchronous=FULL (a write resolved to an app survives power loss), migrated to this
 * software's schema, with the `meta` table of small named values and one way to run a
 * transaction. Every method is synchronous.
 */
export class AgentDb {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #s;

  constructor(dataDir: string) {
    this.path = join(dataDir, 'agent.db');
    let db: Database.Database | undefined;
    try {
      mkdirSync(dataDir, { recursive: true });
      this.#db = db = new Database(this.path);
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma('synchronous = FULL');
      this.#db.pragma('busy_timeout = 5000');
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

  /** Runs `body` in one write transaction (BEGIN IMMEDIATE): all of it, or none of it if it throws. */
  transaction<T>(body: () => T): T {
    return this.#db.transaction(body).immediate();
  }

  /**
   * `transaction` for an app's writes, whose failure the app must be able to act on: a full disk
   * is StorageFullError, anything else StorageFailedError; either way nothing was stored.
   */
  appTransaction<T>(body: () => T): T {
    try {
      return this.transaction(body);
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
  }
}
