import { hash } from 'node:crypto';

/**
 * Content digests: how a replica and the hub tell, cheaply and at any time, whether they hold
 * the same documents.
 *
 * Each document state has a hash `h` over (collection, key, version, deleted, value bytes): the
 * first 52 bits of its SHA-256. A collection's digest is the sum of its documents' `h`
 * (tombstones included) modulo 2^52, so a change moves it by `h_new − h_old`: O(1) per change,
 * whatever the order changes arrive or are applied in.
 *
 * Why 52 bits and a sum: every figure is a plain JavaScript number (exact below 2^53), so the
 * hot path allocates no BigInt and both SQL engines store it as an ordinary integer (SQLite's
 * triggers can keep an agent's digest with plain arithmetic). A sum, unlike XOR, does not
 * cancel a document counted twice. The digest guards against damage, not an adversary (the
 * hub holds the truth and sends it over an authenticated link): two different states collide
 * with odds of 2^-52 per comparison, about one false "equal" in 10^15.
 *
 * `value` is the document's value as stored: the CBOR encoding of the decoded value by this
 * codec, the same bytes on the hub and on every replica.
 */

export const DIGEST_MODULUS = 2 ** 52;

/**
 * The hash of one document state: a non-negative integer below DIGEST_MODULUS. What is hashed
 * is one buffer, `u32 len ‖ collection ‖ u32 len ‖ key ‖ f64 version ‖ u8 deleted ‖ value`
 * (UTF-8, big-endian; no value for a tombstone), in one call: this runs once per change on the
 * hub and on every replica.
 */
export function documentHash(collection: string, key: string, version: number, deleted: boolean, value: Uint8Array | null): number {
  const c = Buffer.byteLength(collection);
  const k = Buffer.byteLength(key);
  const body = value !== null && !deleted ? value : undefined;
  const bytes = Buffer.allocUnsafe(17 + c + k + (body?.length ?? 0));
  bytes.writeUInt32BE(c, 0);
  bytes.write(collection, 4, 'utf8');
  bytes.writeUInt32BE(k, 4 + c);
  bytes.write(key, 8 + c, 'utf8');
  bytes.writeDoubleBE(version, 8 + c + k);
  bytes[16 + c + k] = deleted ? 1 : 0;
  if (body) bytes.set(body, 17 + c + k);
  // The digest as a 'binary' (latin1) string, one character a byte: Node 20 makes a 'buffer'
  // result through a slower path that cost twice the hash itself here. The number is the same.
  const d = hash('sha256', bytes, 'binary');
  const high = ((d.charCodeAt(1) & 0x0f) << 16) | (d.charCodeAt(2) << 8) | d.charCodeAt(3); // the first word's low 20 bits
  const low = d.charCodeAt(4) * 2 ** 24 + ((d.charCodeAt(5) << 16) | (d.charCodeAt(6) << 8) | d.charCodeAt(7));
  return high * 2 ** 32 + low;
}

/** A digest with a document's hash added (`sign` 1) or taken out (`sign` -1). */
export function adjustDigest(digest: number, hash: number, sign: 1 | -1 = 1): number {
  const sum = digest + sign * hash;
  return sum < 0 ? sum + DIGEST_MODULUS : sum >= DIGEST_MODULUS ? sum - DIGEST_MODULUS : sum;
}

/**
 * Where a key falls among a collection's ranges: a 32-bit FNV-1a hash of its UTF-8 bytes, its
 * bits then mixed (MurmurHash3's finaliser: FNV alone leaves the top bits of short, similar keys
 * alike, and ranges are cut by the top bits). A
 * range of depth `d` is the keys whose position starts with the same `d` bits: depth 8 splits a
 * collection into 256 ranges, each range of depth 8 into 256 of depth 16, and so on. Hashing
 * spreads any key pattern evenly; range repair narrows by adding bits.
 */
export function keyPosition(key: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(key, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The deepest range: one key position. */
export const MAX_RANGE_DEPTH = 32;

/** The range of depth `depth` a key position falls in (depth 0: the one range of everything). */
export function rangeOf(position: number, depth: number): number {
  return depth === 0 ? 0 : Math.floor(position / 2 ** (MAX_RANGE_DEPTH - depth));
}

/**
 * Sums documents into the sub-ranges of some ranges: each of `parents` (ranges of depth
 * `depth`) split `2^bits` ways. Fed one document at a time by a store that scans a collection,
 * on the hub and on a replica alike, so both sides cut the same ranges.
 */
export class RangeTally {
  readonly #parents: Map<number, number>;
  readonly digests: number[][];
  readonly counts: number[][];

  constructor(
    readonly depth: number,
    readonly parents: readonly number[],
    readonly bits: number,
  ) {
    if (depth < 0 || bits < 0 || depth + bits > MAX_RANGE_DEPTH) throw new RangeError(`ranges of depth ${depth + bits} do not exist`);
    this.#parents = new Map(parents.map((p, i) => [p, i]));
    this.digests = parents.map(() => new Array<number>(2 ** bits).fill(0));
    this.counts = parents.map(() => new Array<number>(2 ** bits).fill(0));
  }

  /** Whether a key falls in one of the parents. */
  covers(key: string): boolean {
    return this.#parents.has(rangeOf(keyPosition(key), this.depth));
  }

  /** Adds one document (its stored hash) to its sub-range, if it falls in one of the parents. */
  add(key: string, hash: number): void {
    const position = keyPosition(key);
    const parent = this.#parents.get(rangeOf(position, this.depth));
    if (parent === undefined) return;
    const child = rangeOf(position, this.depth + this.bits) - rangeOf(position, this.depth) * 2 ** this.bits;
    this.digests[parent]![child] = adjustDigest(this.digests[parent]![child]!, hash);
    this.counts[parent]![child]! += 1;
  }
}

/** Whether a key falls in any of these ranges of depth `depth`. */
export function inRanges(key: string, depth: number, ranges: ReadonlySet<number>): boolean {
  return ranges.has(rangeOf(keyPosition(key), depth));
}
