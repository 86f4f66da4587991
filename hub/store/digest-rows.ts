import { adjustDigest, DIGEST_MODULUS, documentHash, inRanges } from '../../shared/digest.js';
import type { Change } from '../../shared/messages.js';
import type { BucketDigestMismatch, DamagedDocument, DigestMismatch, HubVerifyReport, RangeDocuments } from './digest-reads.js';
import { documentRowToChange, encodedChangeBytes, type DocumentRow, type LogRow } from './rows.js';

/**
 * Content digests as both SQL stores read and check them (see DigestReads): the hash of a stored
 * row, pages of a collection's documents by key range, and the tally of a scrub.
 */

/** How many documents a backfill or a scrub reads at a time, each chunk its own query (and, writing, its own transaction). */
export const DIGEST_CHUNK = 1000;

/** The hash a document's row should have: over its stored value bytes exactly. */
export function rowHash(row: DocumentRow): number {
  return documentHash(row.collection, row.key, row.version, Boolean(row.deleted), row.value);
}

/** The hash stored with a document's row; computed from the row where a backfill has not reached it yet. */
export function storedHash(row: DocumentRow): number {
  return row.hash ?? rowHash(row);
}

/**
 * The sum of hashes modulo 2^52 from the sums of their high and low 26 bits, as SQL sums them:
 * each part of each hash is below 2^26, so either sum stays exact (below 2^53) up to 2^27 rows.
 */
export function digestOfHalves(high: number, low: number): number {
  return ((high % 2 ** 26) * 2 ** 26 + (low % DIGEST_MODULUS)) % DIGEST_MODULUS;
}

/** SQL of the high and low halves that digestOfHalves sums (SQLite's sum() fails on overflow). */
export const HASH_HALVES = 'sum(hash >> 26) AS high, sum(hash & 67108863) AS low';

/**
 * One page of rangeDocuments, fed by a store scanning a collection's keys in order: it says which
 * keys are wanted (in the ranges), takes the rows read for them while they fit, and knows whether
 * more followed.
 */
export class RangePage {
  readonly #ranges: ReadonlySet<number>;
  readonly #docs: Change[] = [];
  #bytes = 0;
  #readBytes = 0;
  #more = false;

  constructor(
    readonly depth: number,
    ranges: readonly number[],
    readonly limit: number,
    readonly maxBytes: number,
  ) {
    this.#ranges = new Set(ranges);
  }

  /** Whether a key is in the ranges. */
  covers(key: string): boolean {
    return inRanges(key, this.depth, this.#ranges);
  }

  /** `limit` documents are in: the next key in range is for the next page. */
  get full(): boolean {
    return this.#docs.length >= this.limit;
  }

  /** How many more documents may go in. */
  get room(): number {
    return Math.max(0, this.limit - this.#docs.length);
  }

  /** Adds a document read for a key in range; false (and it is left for the next page) when it would pass `maxBytes`. */
  add(row: DocumentRow): boolean {
    const size = encodedChangeBytes(row);
    this.#readBytes += size;
    if (this.#docs.length > 0 && this.#bytes + size > this.maxBytes) {
      this.#more = true;
      return false;
    }
    this.#bytes += size;
    this.#docs.push(documentRowToChange(row));
    return true;
  }

  /** A key in range came after the page was full. */
  more(): void {
    this.#more = true;
  }

  result(lsn: number): RangeDocuments {
    return { lsn, docs: this.#docs, next: this.#more ? this.#docs.at(-1)?.k : undefined, readBytes: this.#readBytes };
  }
}

/** A document row as a scrub reads it. */
export type CheckedRow = DocumentRow & { hash: number | null };

/**
 * What a scrub found, fed chunk by chunk: each document's row against its stored hash, each
 * collection's digest summed from its documents' hashes (as they stand once repaired), then the
 * collections' stored digests against those sums.
 */
export class VerifyTally {
  documents = 0;
  readonly damaged: DamagedDocument[] = [];
  readonly #sums = new Map<string, number>();

  /** The rows of a chunk that no longer hash to their stored hash; the others are counted. */
  check(rows: readonly CheckedRow[]): CheckedRow[] {
    const damaged: CheckedRow[] = [];
    for (const row of rows) {
      this.documents += 1;
      if (row.hash !== null && row.hash === rowHash(row)) this.#add(row.collection, row.hash);
      else damaged.push(row);
    }
    return damaged;
  }

  /**
   * A damaged document, with the log entry of its version if the log still holds it and the hash
   * of the row restored from it (`restoredHash`: undefined if it was not restored).
   */
  damage(row: CheckedRow, restorable: boolean, restoredHash: number | undefined): void {
    this.damaged.push({ collection: row.collection, key: row.key, version: row.version, restorable, restored: restoredHash !== undefined });
    this.#add(row.collection, restoredHash ?? row.hash ?? 0);
  }

  /** The collections whose stored digest is not their documents' sum (a collection without a row has 0 stored). */
  mismatches(stored: ReadonlyMap<string, number>): Array<Omit<DigestMismatch, 'rewritten'>> {
    const names = [...new Set([...stored.keys(), ...this.#sums.keys()])].sort();
    return names
      .map((collection) => ({ collection, stored: stored.get(collection) ?? 0, computed: this.#sums.get(collection) ?? 0 }))
      .filter((c) => c.stored !== c.computed);
  }

  /**
   * The report, over the collections stored (`stored`: each one's digest) and those documents
   * named, and the buckets recounted (`buckets`: how many, and those that disagreed).
   */
  report(
    stored: ReadonlyMap<string, number>,
    digests: DigestMismatch[],
    buckets: { checked: number; mismatches: BucketDigestMismatch[] },
    engine: HubVerifyReport['engine'],
  ): HubVerifyReport {
    const collections = new Set([...stored.keys(), ...this.#sums.keys()]).size;
    const bucketDigests = buckets.mismatches;
    const ok = this.damaged.length === 0 && digests.length === 0 && bucketDigests.length === 0 && engine.ok;
    return { documents: this.documents, collections, buckets: buckets.checked, damaged: this.damaged, digests, bucketDigests, engine, ok };
  }

  #add(collection: string, hash: number): void {
    this.#sums.set(collection, adjustDigest(this.#sums.get(collection) ?? 0, hash));
  }
}

/** The log entry a damaged document can be restored from: the one at its version, of its key. */
export function restoresRow(row: CheckedRow, entry: LogRow | undefined): entry is LogRow {
  return entry !== undefined && entry.lsn === row.version && entry.collection === row.collection && entry.key === row.key;
}

/** A document row restored from its log entry, with its hash recomputed. */
export function restoredRow(row: CheckedRow, entry: LogRow): CheckedRow & { hash: number } {
  const restored = { ...row, value: entry.value, deleted: entry.op === 'del', hlc: entry.hlc, origin: entry.origin };
  return { ...restored, hash: rowHash(restored) };
}
