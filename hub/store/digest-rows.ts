import { DIGEST_MODULUS, documentHash } from '../../shared/digest.js';
import type { DocumentRow } from './rows.js';

/** Content digests as both SQL stores read them (see DigestReads): the hash of a stored row, and sums of hashes. */

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
