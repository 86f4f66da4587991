import type { AgentDb } from './agent-db.js';

/**
 * Which blob content the device holds, its size and when it was last used: the cache's least
 * recently used eviction reads it (agent/blobs/device-content.ts). Not fsynced: after a power
 * cut the content files themselves say what is held, and an entry missing is made again.
 */
export class BlobCacheIndex {
  readonly #s;

  constructor(db: AgentDb) {
    this.#s = {
      used: db.prepare<[string, number, number]>(
        `INSERT INTO blob_cache (sha256, size, used_at) VALUES (?, ?, ?)
         ON CONFLICT (sha256) DO UPDATE SET used_at = excluded.used_at`,
      ),
      remove: db.prepare<[string]>('DELETE FROM blob_cache WHERE sha256 = ?'),
      total: db.prepare<[], { bytes: number | null; n: number }>('SELECT sum(size) AS bytes, count(*) AS n FROM blob_cache'),
      oldestFirst: db.prepare<[], { sha256: string; size: number }>('SELECT sha256, size FROM blob_cache ORDER BY used_at, sha256'),
    };
  }

  /** Content `sha256` of `size` bytes is held, and was used now. */
  used(sha256: string, size: number, now = Date.now()): void {
    this.#s.used.run(sha256, size, now);
  }

  remove(sha256: string): void {
    this.#s.remove.run(sha256);
  }

  total(): { bytes: number; blobs: number } {
    const { bytes, n } = this.#s.total.get()!;
    return { bytes: bytes ?? 0, blobs: n };
  }

  /** Every content held, least recently used first. */
  oldestFirst(): Array<{ sha256: string; size: number }> {
    return this.#s.oldestFirst.all();
  }
}
