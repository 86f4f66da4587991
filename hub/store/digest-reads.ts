import type { Change } from '../../shared/messages.js';
import type { BucketDigest } from './bucket-digests.js';

/**
 * What a hub store answers about content digests (shared/digest.ts): each document's hash and
 * each collection's digest are kept with every change, in its transaction (`IngestTx.commit`), so
 * that a replica can compare what it holds with the hub at an LSN, narrow a difference down by
 * key ranges and fetch just the documents of the ranges that differ; and so that the hub can
 * scrub its own database. Part of HubStore; every implementation passes the contract suite.
 */
export interface DigestReads {
  /**
   * A collection's digest as of `lsn`: its current digest if it has not changed since (0 if it
   * never had a change), else the digest logged with its newest change at or before `lsn`.
   * Undefined when that cannot be told: retention pruned that change, or it predates digests.
   */
  digestAt(collection: string, lsn: number): Promise<number | undefined>;
  /**
   * Each of these scope buckets' head and digest (the sum of the hashes of the documents in it,
   * tombstones included), read together: the digest is the bucket's as of that head. A bucket
   * never written, nor given a document by a rebucket, is left out.
   */
  bucketDigests(buckets: readonly string[]): Promise<Map<string, BucketDigest>>;
  /**
   * Sums a collection's documents (tombstones included) into the sub-ranges of `parents`, ranges
   * of depth `depth` each split `2^bits` ways (shared/digest.ts RangeTally): per parent, each
   * sub-range's digest and count. `lsn`: the head the documents were read at. With `bucket`,
   * only the collection's documents in that bucket, read through its index.
   */
  rangeDigests(collection: string, depth: number, parents: readonly number[], bits: number, bucket?: string): Promise<RangeDigests>;
  /**
   * A collection's documents (tombstones included, as `del`) whose keys fall in one of `ranges`
   * (of depth `depth`), in key order after `after`: at most `limit`, about `maxBytes` of them (at
   * least one). `next`: the last key returned, when more follow; `lsn` as for rangeDigests. With
   * `bucket`, only those in that bucket (read through its index), each with its buckets (`bk`).
   */
  rangeDocuments(query: RangeDocumentsQuery): Promise<RangeDocuments>;
  /**
   * The store's own scrub: every document's row against its stored hash, every collection's and
   * every scope bucket's digest against its documents' hashes, and the database engine's own
   * check. `repair` restores a damaged document from its log entry where the log still holds its
   * version, and rewrites each digest that disagrees; it needs the hub stopped (HubRunningError
   * otherwise).
   * Reads the documents in chunks, never the whole table at once.
   */
  verify(options?: { repair?: boolean }): Promise<HubVerifyReport>;
}

export interface RangeDigests {
  lsn: number;
  /** By parent (in the order given), then by sub-range: the sum of the documents' hashes. */
  digests: number[][];
  counts: number[][];
}

/** Which documents a page of rangeDocuments reads (see there). */
export interface RangeDocumentsQuery {
  collection: string;
  depth: number;
  ranges: readonly number[];
  after?: string | undefined;
  limit: number;
  maxBytes: number;
  bucket?: string | undefined;
}

export interface RangeDocuments {
  lsn: number;
  docs: Change[];
  next: string | undefined;
  /** What reading them cost: the bytes of every document read. */
  readBytes: number;
}

/** A document whose row no longer hashes to the hash stored with it. */
export interface DamagedDocument {
  collection: string;
  key: string;
  version: number;
  /** The log still holds its version: the row can be restored from it. */
  restorable: boolean;
  restored: boolean;
}

/** A collection whose stored digest is not the sum of its documents' hashes. */
export interface DigestMismatch {
  collection: string;
  stored: number;
  computed: number;
  rewritten: boolean;
}

/** A scope bucket whose stored digest is not the sum of the hashes of the documents in it. */
export interface BucketDigestMismatch {
  bucket: string;
  stored: number;
  computed: number;
  rewritten: boolean;
}

/** What `verify` found. `ok`: nothing at all was wrong (a repaired store still says false). */
export interface HubVerifyReport {
  /** Documents checked (tombstones included), collections and scope buckets. */
  documents: number;
  collections: number;
  buckets: number;
  damaged: DamagedDocument[];
  digests: DigestMismatch[];
  bucketDigests: BucketDigestMismatch[];
  /** The engine's own check: what ran, whether it passed, and what it said otherwise. */
  engine: { check: string; ok: boolean; detail?: string };
  ok: boolean;
}
