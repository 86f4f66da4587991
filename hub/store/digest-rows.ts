import { DIGEST_MODULUS, documentHash, inRanges } from '../../shared/digest.js';
import type { Change } from '../../shared/messages.js';
import type { RangeDocuments } from './digest-reads.js';
import { documentRowToChange, encodedChangeBytes, type DocumentRow } from './rows.js';

/**
 * Content digests as both SQL stores read them (see DigestReads): the hash of a stored row, sums
 * of hashes, and pages of a collection's documents by key range.
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
