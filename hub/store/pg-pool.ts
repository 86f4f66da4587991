import pg from 'pg';
import { StorageFailedError } from '../../shared/errors.js';
import { schemaConnectionOptions } from './pg-schema.js';

/** bigint columns (LSNs, seqs, ms times, counts) as numbers: they stay far below 2^53. */
const INT8_OID = 20;
const types: pg.CustomTypesConfig = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    return oid === INT8_OID ? Number : (pg.types.getTypeParser(oid, format) as (value: string) => unknown);
  },
};

/** Arbitrary, fixed: what the server shows for our connections. */
const APPLICATION_NAME = 'outpost-hub';

/**
 * The hub's connections to one PostgreSQL database (and schema): a pool with bounded waits,
 * whose every query failure becomes a StorageFailedError naming the server, never its password.
 */
export class PgPool {
  readonly pool: pg.Pool;
  /** The server and database, without credentials: for error messages. */
  readonly where: string;

  constructor(url: string, options: { schema?: string; maxConnections?: number }) {
    this.where = describe(url) + (options.schema === undefined ? '' : ` (schema ${options.schema})`);
    this.pool = new pg.Pool({
      connectionString: url,
      max: options.maxConnections ?? 8,
      types,
      application_name: APPLICATION_NAME,
      ...schemaConnectionOptions(options.schema),
      // A half-open connection (a NAT or load balancer that dropped it) must fail, not hang a
      // group commit that every later one waits behind: bounded connects and queries, keepalive.
      connectionTimeoutMillis: 10_000,
      query_timeout: 60_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    // A connection that breaks while idle is discarded by the pool; the next query reports it.
    this.pool.on('error', () => undefined);
  }

  /** The rows of one statement; `action` says what failed ("read", "write to") if it does. */
  async query<R extends pg.QueryResultRow>(text: string, values?: unknown[], action = 'read'): Promise<R[]> {
    return this.wrap(action, async () => (await this.pool.query<R>(text, values)).rows);
  }

  async wrap<T>(action: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (cause) {
      throw new StorageFailedError(this.where, action, { cause });
    }
  }

  end(): Promise<void> {
    return this.pool.end();
  }
}

/** The URL without its password, for messages. */
function describe(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = '';
    return parsed.toString();
  } catch {
    return 'the PostgreSQL URL given';
  }
}
