import { join } from 'node:path';
import { DEFAULT_PARTITION } from '../../shared/topics.js';
import type { HubStore } from './hub-store.js';
import { ConfigError } from '../../shared/errors.js';
import type { ObjectStoreLocation } from '../blobs/s3-bucket.js';

/** Where the hub keeps its primary data: a PostgreSQL URL, or else SQLite in the data directory. */
export interface StoreLocation {
  /** `postgres://…` (or `postgresql://…`); absent: SQLite. */
  store?: string | undefined;
  /** The data directory, where SQLite keeps `hub.db`. */
  dataDir: string;
  /** PostgreSQL: the leadership epoch to write as (fenced on every group commit). */
  epoch?: number;
  /**
   * The partition whose log this is (default `default`, which keeps `<dataDir>/hub.db` and
   * PostgreSQL's `public` schema): another lives in `<dataDir>/partitions/<p>/hub.db`, or in the
   * schema `outpost_p_<p>`. Agents' credentials are always in the default partition's store.
   */
  partition?: string;
  /** PostgreSQL: connections in the pool (default 8). */
  maxConnections?: number;
  /** PostgreSQL: the S3-compatible bucket blob content goes to instead of the database. */
  objectStore?: ObjectStoreLocation;
}

/** Where SQLite keeps a partition's database: the data directory itself for the default one. */
export function sqliteDirOf(dataDir: string, partition: string = DEFAULT_PARTITION): string {
  return partition === DEFAULT_PARTITION ? dataDir : join(dataDir, 'partitions', partition);
}

export const isPostgresUrl = (url: string): boolean => /^postgres(ql)?:\/\//.test(url);

/**
 * Opens the hub's store. The PostgreSQL driver is loaded only when asked for, so that the
 * embedded default does not carry it.
 */
export async function openHubStore(location: StoreLocation): Promise<HubStore> {
  const { store } = location;
  if (store !== undefined) {
    if (!isPostgresUrl(store)) {
      throw new ConfigError(
        `store ${JSON.stringify(store)} is not a PostgreSQL URL: use postgres://user:password@host:5432/database, or leave it out for SQLite in the data directory`,
      );
    }
    const [{ PostgresHubStore }, { partitionSchema }] = await Promise.all([import('./pg-store.js'), import('./pg-schema.js')]);
    const schema = partitionSchema(location.partition ?? DEFAULT_PARTITION);
    return PostgresHubStore.open(store, {
      ...(location.epoch !== undefined && { epoch: location.epoch }),
      ...(schema !== undefined && { schema }),
      ...(location.maxConnections !== undefined && { maxConnections: location.maxConnections }),
      ...(location.objectStore && { objectStore: location.objectStore }),
    });
  }
  if (location.objectStore) {
    throw new ConfigError(
      'an object store for blob content needs a PostgreSQL store: a SQLite hub keeps content in files under its data directory',
    );
  }
  const { SqliteHubStore } = await import('./sqlite-store.js');
  return new SqliteHubStore(sqliteDirOf(location.dataDir, location.partition));
}
