/**
 * Fills a hub database that no hub has open, through the hub's own store (the same `commit` its
 * ingest calls, in large transactions): a million documents uploaded by agents would take
 * minutes of set-up for a benchmark that times something else. With `pruneLog`, retention then
 * removes the log up to the last entry, as on a hub that has run a while: an agent with an empty
 * replica is then further behind than the log reaches, and must bootstrap by snapshot.
 */
import { HybridClock } from '../shared/hlc.js';
import type { JsonValue } from '../shared/values.js';
import { SqliteHubDb } from '../hub/store/sqlite-db.js';

const BATCH = 10_000;

/** Commits `count` puts to `collection` (keys `r-0`…); returns the head LSN. */
export function seedHub(
  dataDir: string,
  collection: string,
  count: number,
  value: (i: number) => JsonValue,
  options: { pruneLog: boolean },
): number {
  const store = new SqliteHubDb(dataDir);
  const clock = new HybridClock();
  try {
    for (let from = 0; from < count; from += BATCH) {
      store.transaction(() => {
        let lsn = 0;
        for (let i = from; i < Math.min(count, from + BATCH); i++) {
          lsn = store.commit({
            collection,
            key: `r-${i}`,
            op: 'put',
            value: value(i),
            hlc: clock.tick(),
            origin: 'hub',
            incarnation: null,
            seq: null,
          }).lsn;
        }
        store.setCollectionHead(collection, lsn); // the change-set chain (`prev`) continues from here
      });
    }
    if (options.pruneLog) store.prune({ maxAgeMs: 0, maxEntries: 1 });
    return store.head;
  } finally {
    store.close();
  }
}
