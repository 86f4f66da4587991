import { inRanges } from '../../shared/digest.js';
import type { Change } from '../../shared/messages.js';
import type { AgentDb } from './agent-db.js';
import { IN_BUCKET } from './bucket-digests.js';
import { repairedBuckets } from './bucket-membership.js';
import { RangeRepair, type KeyWindow, type RangeRepaired } from './range-repair.js';
import type { ScopeBuckets } from './scope-buckets.js';

/** What a repair page of a bucket changed: as RangeRepaired (`removed`: evicted), and the documents kept that no longer name the bucket. */
export interface BucketRepaired extends RangeRepaired {
  untagged: Array<{ collection: string; key: string }>;
}

interface HeldRow {
  key: string;
  version: number;
  buckets: string;
}

const parse = (buckets: string | null): string[] => {
  const parsed: unknown = buckets === null ? [] : JSON.parse(buckets);
  return Array.isArray(parsed) ? parsed.filter((b): b is string => typeof b === 'string') : [];
};

/**
 * Puts key ranges of one scope bucket whose digests differ from the hub's back as the hub has
 * them, a page of the bucket's documents at a time (RangeRepair, for one bucket's documents).
 * A document is stored with the buckets a snapshot of the bucket would store (bucket-membership.ts);
 * one the device holds through the bucket that the hub does not list is no longer held through
 * it, and is evicted if no other bucket the device holds keeps it.
 */
export class BucketRepair {
  readonly #writes: RangeRepair;
  readonly #s;
  readonly #windows = new Map<string, ReturnType<AgentDb['prepare']>>();

  constructor(
    private readonly db: AgentDb,
    private readonly scope: ScopeBuckets,
  ) {
    this.#writes = new RangeRepair(db);
    this.#s = {
      row: db.prepare<[string, string], { version: number; evicted: number; buckets: string | null }>(
        'SELECT version, evicted, buckets FROM documents WHERE collection = ? AND key = ?',
      ),
      setBuckets: db.prepare<[string, string, string]>('UPDATE documents SET buckets = ? WHERE collection = ? AND key = ?'),
      // A stub keeps the version it had: an older change cannot bring the document back, a bucket that has it can.
      evict: db.prepare<[string, string]>(
        'UPDATE documents SET value = NULL, deleted = 1, evicted = 1, buckets = NULL, hash = NULL WHERE collection = ? AND key = ?',
      ),
    };
  }

  /**
   * One page of the hub's documents `docs` of bucket `bucket` (held in lane `lane`) in the ranges
   * `ranges` (of depth `depth`) of a collection, as of the hub's LSN `lsn`, in one transaction.
   * Each is written as the hub has it (RangeRepair.write), even at the version held. A document
   * held through the bucket in those ranges and the key window that the page does not list, at a
   * version at or below `lsn`, is not in the bucket: the bucket leaves its stored buckets, and it
   * is evicted to a stub unless another bucket held still names it (that bucket answers for it
   * itself: one followed through its log, one being fetched by snapshot once the snapshot named
   * it, and the eviction after a join looks again). The outbox is not touched.
   */
  repair(
    lane: string,
    collection: string,
    bucket: string,
    depth: number,
    ranges: readonly number[],
    docs: readonly Change[],
    window: KeyWindow,
    lsn: number,
  ): BucketRepaired {
    return this.db.transaction(() => {
      const held = this.scope.held(lane);
      const repaired: BucketRepaired = { written: [], removed: [], untagged: [], bytes: 0 };
      const listed = new Set<string>();
      for (const doc of docs) {
        if (doc.c !== collection || doc.op === 'out' || doc.op === 'tag') continue;
        listed.add(doc.k);
        const row = this.#s.row.get(doc.c, doc.k);
        const stored = row && row.version === doc.lsn && row.evicted === 0 ? parse(row.buckets) : [];
        const bytes = this.#writes.write(doc, repairedBuckets(doc.bk ?? [], bucket, lsn, held, stored));
        if (bytes === undefined) continue;
        repaired.written.push({ collection, key: doc.k });
        repaired.bytes += bytes;
      }
      const wanted = new Set(ranges);
      for (const row of this.#held(collection, bucket, window)) {
        if (listed.has(row.key) || row.version > lsn || !inRanges(row.key, depth, wanted)) continue;
        const others = parse(row.buckets).filter((b) => b !== bucket);
        if (others.some((b) => held.has(b))) {
          this.#s.setBuckets.run(JSON.stringify(others), collection, row.key);
          repaired.untagged.push({ collection, key: row.key });
        } else {
          this.#s.evict.run(collection, row.key);
          repaired.removed.push({ collection, key: row.key });
        }
      }
      return repaired;
    });
  }

  /** Keys, versions and stored buckets of the collection's documents held through the bucket, in the window. */
  #held(collection: string, bucket: string, window: KeyWindow): HeldRow[] {
    const shape = `${window.after === undefined ? '' : '>'}${window.through === undefined ? '' : '<='}`;
    let statement = this.#windows.get(shape);
    if (!statement) {
      const bounds = `${window.after === undefined ? '' : ' AND key > ?'}${window.through === undefined ? '' : ' AND key <= ?'}`;
      statement = this.db.prepare(`SELECT key, version, buckets FROM documents WHERE collection = ? AND ${IN_BUCKET}${bounds}`);
      this.#windows.set(shape, statement);
    }
    const params = [collection, bucket, window.after, window.through].filter((p) => p !== undefined);
    return statement.all(...params) as HeldRow[];
  }
}
