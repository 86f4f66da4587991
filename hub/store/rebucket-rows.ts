import { decodeCbor } from '../../shared/codec.js';
import type { JsonValue } from '../../shared/values.js';
import type { ScopeRulesChange } from './hub-store.js';
import { parseBuckets } from './rows.js';
import { documentBucketChanges } from './write-rows.js';

/**
 * How a collection's documents are brought to new scope rules (HubStore.rebucket), the same way
 * by both stores: which documents change and what is written of each, a chunk at a time.
 */

/**
 * Documents per rebucket transaction: short enough that group commits wait little between two,
 * and memory holds one chunk of values, whatever the collection's size.
 */
export const REBUCKET_CHUNK = 1_000;

/** A document as rebucketing reads it; its value only when the rules need it (NULL otherwise). */
export interface RebucketRow {
  key: string;
  value: Buffer | null;
  deleted: boolean | number;
  buckets: string | null;
  prior_buckets: string | null;
  /** Its stored hash: what it adds to and takes from the digests of the buckets it joins and leaves. */
  hash: number | null;
}

/** What rebucketing writes of one document: its buckets and prior buckets (JSON arrays or NULL), and its index rows. */
export interface RebucketWrite {
  key: string;
  buckets: string | null;
  prior_buckets: string | null;
  /** Rows of document_buckets to remove and to add: disjoint. */
  removed: string[];
  added: string[];
  hash: number;
}

/** How far one chunk went: the last key it read, undefined once it reached the collection's end. */
export interface RebucketChunk {
  changed: number;
  last: string | undefined;
}

/**
 * The writes of one chunk of documents read in key order. A document whose stored buckets
 * already are the new ones (as a set) writes nothing: a chunk done before an interruption is
 * left as it is. Unscoping writes only the documents that still have buckets of either kind.
 */
export function rebucketWrites(rows: Iterable<RebucketRow>, change: ScopeRulesChange): RebucketWrite[] {
  const writes: RebucketWrite[] = [];
  for (const row of rows) {
    const old = row.buckets === null ? undefined : parseBuckets(row.buckets);
    if (change.rules === undefined) {
      if (old !== undefined || row.prior_buckets !== null) {
        writes.push({ key: row.key, buckets: null, prior_buckets: null, hash: row.hash ?? 0, ...documentBucketChanges(old, []) });
      }
      continue;
    }
    const value = row.deleted || row.value === null ? undefined : (decodeCbor(row.value) as JsonValue);
    const buckets = change.bucketsOf(row.key, value);
    if (old !== undefined && sameSet(old, buckets)) continue;
    const prior = change.prior(old);
    writes.push({
      key: row.key,
      buckets: JSON.stringify(buckets),
      prior_buckets: prior === undefined ? null : JSON.stringify(prior),
      hash: row.hash ?? 0, // every document has its hash once the store is open (backfill)
      ...documentBucketChanges(old, buckets),
    });
  }
  return writes;
}

/**
 * Runs `chunk` from the collection's first key to its end, each call after the last key of the
 * one before; how many documents changed in all.
 */
export async function rebucketInChunks(chunk: (after: string | undefined) => Promise<RebucketChunk>): Promise<number> {
  let changed = 0;
  let after: string | undefined;
  do {
    const done = await chunk(after);
    changed += done.changed;
    after = done.last;
  } while (after !== undefined);
  return changed;
}

/** How far a chunk that read `rows` went: the collection ends with a chunk that was not full. */
export function chunkEnd(changed: number, rows: readonly RebucketRow[]): RebucketChunk {
  return { changed, last: rows.length < REBUCKET_CHUNK ? undefined : rows.at(-1)!.key };
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const x = new Set(a);
  const y = new Set(b);
  return x.size === y.size && [...x].every((bucket) => y.has(bucket));
}
