import type pg from 'pg';
import { OutpostError, StorageFailedError } from '../../shared/errors.js';
import type { PgPool } from '../store/pg-pool.js';

/**
 * Runs `fn` in a transaction on one connection; a failure rolls back, an Outpost error passing
 * as it is (an object store's included), any other as StorageFailedError.
 */
export async function inTransaction<T>(db: PgPool, action: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.wrap(action, () => db.pool.connect());
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error instanceof OutpostError ? error : new StorageFailedError(db.where, action, { cause: error });
  } finally {
    client.release();
  }
}

/** A content's row, locked for the transaction under way (`FOR SHARE` to add to it, `FOR UPDATE` to complete it). */
export async function contentRow(
  client: pg.PoolClient,
  hash: string,
  lock: 'FOR SHARE' | 'FOR UPDATE',
): Promise<{ size: number; complete: boolean } | undefined> {
  return (
    await client.query<{ size: number; complete: boolean }>(`SELECT size, complete FROM blob_contents WHERE hash = $1 ${lock}`, [hash])
  ).rows[0];
}
