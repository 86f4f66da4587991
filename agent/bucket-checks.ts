import type { Logger } from 'pino';
import { keyPosition, MAX_RANGE_DEPTH } from '../shared/digest.js';
import { MAX_BUCKETS } from '../shared/message-parts.js';
import { MAX_RANGES } from '../shared/messages.js';
import type { RangeRepairer, Step } from './range-repairer.js';
import type { AgentStore } from './store/agent-store.js';
import { followed } from './store/bucket-membership.js';
import type { RepairCause, VerificationBook } from './verification-book.js';

export interface BucketChecksOptions {
  partition: string;
  /** The lane's scoped collections, as its hub last said: their buckets are verified. */
  scopedCollections(): readonly string[];
  /** A held bucket's collection, as the hub's scope said. */
  collectionOfBucket?(bucket: string): string | undefined;
}

/**
 * Verifies the scope buckets a lane follows, each on its own, as the Verifier does a collection
 * held whole: the replica's digest of a bucket (the documents held through it) against the hub's.
 * - `hole`: right after a bucket's change set or page that carries its digest was applied in
 *   order (the bucket's cursor exactly there), unless another bucket of the collection is
 *   applied further: it may have brought a later version of one of this bucket's documents.
 * - `digest`: a status report asks the hub for the digests of the buckets followed (`vb`), each at
 *   the cursor its digest was taken at; the hub answers for those whose head is not past it.
 * - `scrub`: a rotten row is fetched again through a bucket followed that it is stored in.
 * A mismatch is repaired by the lane's RangeRepairer, over that bucket's documents.
 */
export class BucketChecks {
  /** Each bucket's collection, as its change sets and pages said (a bucket's id does not say it). */
  readonly #collections = new Map<string, string>();
  /** The digests a status report asked the hub to compare, until it answers. */
  #question: Map<string, { lsn: number; digest: number }> | undefined;
  /** Where the next question starts among the buckets followed, when there are more than one question names. */
  #from = 0;

  constructor(
    private readonly store: AgentStore,
    private readonly repairer: RangeRepairer,
    private readonly book: VerificationBook,
    private readonly options: BucketChecksOptions,
    private readonly log: Logger,
  ) {}

  /**
   * The hub's digest of `bucket` (of `collection`) right after its change at `lsn`, which the
   * device just applied: compared if the bucket is applied exactly that far and no other bucket of
   * the collection further (a bucket whose collection is not known yet counts as one of it).
   * Returns false when it could not be compared.
   */
  check(bucket: string, collection: string, lsn: number, digest: number): boolean {
    this.#collections.set(bucket, collection);
    const held = this.store.scope.held(this.options.partition);
    const state = held.get(bucket);
    if (!followed(state) || state!.cursor !== lsn) return false;
    for (const [other, s] of held) {
      const of = this.options.collectionOfBucket?.(other) ?? this.#collections.get(other) ?? collection;
      if (other !== bucket && s.cursor > lsn && of === collection) return false;
    }
    return this.#compare(bucket, collection, lsn, digest, this.store.bucketDigests.digest(bucket), 'hole');
  }

  /** What the next status report asks (`vb`): each bucket followed, at the cursor its digest was taken at. */
  question(capture: boolean): Record<string, number> | undefined {
    if (capture) this.#question = this.#capture();
    return this.#question && this.#question.size > 0 ? Object.fromEntries([...this.#question].map(([b, q]) => [b, q.lsn])) : undefined;
  }

  /** Whether a question is waiting for its answer. */
  get asking(): boolean {
    return this.#question !== undefined;
  }

  /** The hub's answer (`bs` of `digests`): each bucket it left out moved on since, and compares at a later check. */
  onDigests(bs: ReadonlyArray<readonly [string, number, number]>): void {
    const question = this.#question;
    this.#question = undefined;
    for (const [bucket, lsn, digest] of bs) {
      const asked = question?.get(bucket);
      if (!asked || asked.lsn !== lsn) continue;
      const collection = this.#collectionOf(bucket);
      if (collection === undefined) {
        // Nothing held through it tells which collection it is of (the device holds none of its documents).
        if (asked.digest !== digest)
          this.log.warn(
            { partition: this.options.partition, bucket },
            'a bucket differs from the hub’s, and its collection is not known: not repaired',
          );
        continue;
      }
      this.#compare(bucket, collection, lsn, digest, asked.digest, 'digest');
    }
  }

  /** Rows of a scoped collection whose bytes no longer match their hash: each refetched through a followed bucket it is stored in. False if none. */
  repairKeys(collection: string, keys: readonly string[]): boolean {
    const held = this.store.scope.held(this.options.partition);
    const byBucket = new Map<string, number[]>();
    const orphans: string[] = [];
    for (const key of keys) {
      const bucket = this.store.bucketDigests.storedBuckets(collection, key).find((b) => followed(held.get(b)));
      if (bucket === undefined) orphans.push(key);
      else byBucket.set(bucket, [...(byBucket.get(bucket) ?? []), keyPosition(key)]);
    }
    if (orphans.length > 0) {
      this.log.error(
        { partition: this.options.partition, collection, keys: orphans.slice(0, 10) },
        'damaged rows of a scoped collection are held through no bucket followed; they are fetched again only when a bucket brings them',
      );
    }
    for (const [bucket, positions] of byBucket) {
      this.#collections.set(bucket, collection);
      const ps = [...new Set(positions)];
      const steps: Step[] = [];
      for (let i = 0; i < ps.length; i += MAX_RANGES) steps.push({ kind: 'refetch', d: MAX_RANGE_DEPTH, ps: ps.slice(i, i + MAX_RANGES) });
      this.repairer.enqueue({ collection, bucket }, 'scrub', steps);
    }
    return byBucket.size > 0;
  }

  /** The hub's digest of a bucket at `lsn` against the replica's (`held`) at the same LSN; false if it could not be compared. */
  #compare(bucket: string, collection: string, lsn: number, digest: number, held: number, cause: RepairCause): boolean {
    const subject = { collection, bucket };
    if (!this.options.scopedCollections().includes(collection) || this.repairer.busy(subject)) return false;
    if (!this.repairer.settledAt(subject, lsn)) return false;
    if (held === digest) {
      this.book.verified(lsn);
      this.repairer.matched(subject);
      return true;
    }
    this.log.warn(
      { partition: this.options.partition, collection, bucket, lsn, cause },
      "this device's copy of a scope bucket differs from the hub's; repairing it by key ranges",
    );
    this.book.found();
    this.repairer.enqueue(subject, cause);
    return true;
  }

  /** The replica's digest of each bucket followed, with the cursor it stands at (see Verifier: taken before anything is applied). */
  #capture(): Map<string, { lsn: number; digest: number }> {
    const question = new Map<string, { lsn: number; digest: number }>();
    const buckets = [...this.store.scope.held(this.options.partition)].filter(([, state]) => followed(state));
    // More than a question names: the next one goes on from where this one stops.
    if (this.#from >= buckets.length) this.#from = 0;
    const asked = [...buckets.slice(this.#from), ...buckets.slice(0, this.#from)].slice(0, MAX_BUCKETS);
    this.#from += asked.length;
    for (const [bucket, state] of asked) question.set(bucket, { lsn: state.cursor, digest: this.store.bucketDigests.digest(bucket) });
    return question;
  }

  /**
   * A bucket's collection: as the hub's scope said, else as its change sets said, else from a
   * document held through it, else the lane's one scoped collection.
   */
  #collectionOf(bucket: string): string | undefined {
    let collection =
      this.options.collectionOfBucket?.(bucket) ?? this.#collections.get(bucket) ?? this.store.bucketDigests.collectionOf(bucket);
    const scoped = this.options.scopedCollections();
    if (collection === undefined && scoped.length === 1) collection = scoped[0];
    if (collection !== undefined) this.#collections.set(bucket, collection);
    return collection;
  }
}
