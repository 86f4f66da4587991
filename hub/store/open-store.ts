import type { HubStore } from './hub-store.js';

/** Where the hub keeps its primary data: a PostgreSQL URL, or else SQLite in the data directory. */
export interface StoreLocation {
  /** `postgres://…` (or `postgresql://…`); absent: SQLite. */
  store?: string | undefined;
  /** The data directory, where SQLite keeps `hub.db`. */
  dataDir: string;
  /** PostgreSQL: the leadership epoch to write as (fenced on every group commit). */
  epoch?: number;
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
      throw new Error(`store ${JSON.stringify(store)} is not a PostgreSQL URL: use postgres://user:password@host:5432/database, or leave it out for SQLite in the data directory`);
    }
    const { PostgresHubStore } = await import('./pg-store.js');
    return PostgresHubStore.open(store, location.epoch === undefined ? {} : { epoch: location.epoch });
  }
  const { SqliteHubStore } = await import('./sqlite-store.js');
  return new SqliteHubStore(location.dataDir);
}
