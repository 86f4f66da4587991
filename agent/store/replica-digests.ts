import { adjustDigest, documentHash, RangeTally } from '../../shared/digest.js';
import type { AgentDb } from './agent-db.js';

/** A replica row's columns that its hash covers. */
export interface HashedColumns {
  collection: string;
  key: string;
  value: Buffer | null;
  deleted: number;
  version: number;
}

/** The hash of the document state a replica row holds, over its value bytes as stored. */
export function rowHash(row: HashedColumns): number {
  return documentHash(row.collection, row.key, row.version, row.deleted !== 0, row.value);
}

/** What a collection's documents sum to in the sub-ranges of some ranges (RangeTally). */
export interface RangeDigests {
  digests: number[][];
  counts: number[][];
}

/**
 * A row's stored hash as the digest triggers count it (agent/schema.ts, migration 9): mod 2^52
 * into [0, 2^52), NULL as 0, so that what is summed here adds up to the stored digest.
 */
export const COUNTED_HASH = '(coalesce(hash, 0) % 4503599627370496 + 4503599627370496) % 4503599627370496';

/**
 * The replica's content digests, as the hub compares them with its own: per collection the sum
 * of the documents' stored hashes (kept by triggers), and sums over key ranges to narrow a
 * mismatch down to documents. Evicted stubs are not held and count nowhere.
 */
export class ReplicaDigests {
  readonly #s;

  constructor(private readonly db: AgentDb) {
    this.#s = {
      digest: db.prepare<[string], { digest: number }>('SELECT digest FROM collections WHERE collection = ?'),
      hashes: db.prepare<[string], { key: string; hash: number }>(
        `SELECT key, ${COUNTED_HASH} AS hash FROM documents WHERE collection = ? AND evicted = 0`,
      ),
      setDigest: db.prepare<[string, number]>(
        `INSERT INTO collections (collection, digest) VALUES (?, ?) ON CONFLICT (collection) DO UPDATE SET digest = excluded.digest`,
      ),
    };
  }

  /** The collection's digest: the sum of its held documents' stored hashes, tombstones included (0 when none). */
  digest(collection: string): number {
    return this.#s.digest.get(collection)?.digest ?? 0;
  }

  /**
   * The collection's held documents (tombstones included) summed into the `2^bits` sub-ranges of
   * each of `parents` (ranges of depth `depth`), from their keys and stored hashes: no value is read.
   */
  rangeDigests(collection: string, depth: number, parents: readonly number[], bits: number): RangeDigests {
    const tally = new RangeTally(depth, parents, bits);
    for (const row of this.#s.hashes.iterate(collection)) tally.add(row.key, row.hash);
    return { digests: tally.digests, counts: tally.counts };
  }

  /**
   * Sets the collection's digest to the sum of its rows' stored hashes and returns it: repairs a
   * digest that rotted itself, which the triggers, moving it by each row's change, never would.
   * (A row whose stored hash rotted is the scrub's to find and a range repair's to rewrite.)
   */
  recountDigest(collection: string): number {
    return this.db.transaction(() => {
      let digest = 0;
      for (const row of this.#s.hashes.iterate(collection)) digest = adjustDigest(digest, row.hash);
      this.#s.setDigest.run(collection, digest);
      return digest;
    });
  }
}
