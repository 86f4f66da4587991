import { Type, type Static } from '@sinclair/typebox';
import { BucketId, Change, CollectionName, Digest, Epoch, Hlc, Key, Lsn, MAX_BUCKETS, message, strict } from './message-parts.js';

/**
 * The messages of verification and range repair (see docs/ARCHITECTURE.md, Verification and
 * repair): what a device reports of it, the hub's digests, and range repair's questions and answers.
 */

/** A range of a collection's keys (shared/digest.ts): the keys whose position starts with its `depth` bits. */
const RangeDepth = Type.Integer({ minimum: 0, maximum: 32 });
const RangeId = Type.Integer({ minimum: 0, maximum: 2 ** 32 - 1 });
/** The most ranges one range message names, and the most sub-ranges (ranges × 2^bits) it asks digests of. */
export const MAX_RANGES = 4096;
export const MAX_SUB_RANGES = 16_384;
/**
 * What the device's verification of its copy has done since its database was created: when its
 * copy last matched the hub's digests, and at which LSN (of the partition's log); divergences
 * found, and what repairing them moved; the last repair's cause: `scrub` (a row's bytes no longer
 * match its hash), `digest` (a quiet device's copy differs from the hub's) or `hole` (the copy
 * differed right after applying a change set or page: something was missed on the way).
 */
export const VerifyReport = Type.Object(
  {
    at: Type.Optional(Type.Integer({ minimum: 0 })),
    lsn: Type.Optional(Lsn),
    found: Type.Integer({ minimum: 0 }),
    repaired: Type.Integer({ minimum: 0 }),
    docs: Type.Integer({ minimum: 0 }),
    bytes: Type.Integer({ minimum: 0 }),
    cause: Type.Optional(Type.Union([Type.Literal('scrub'), Type.Literal('digest'), Type.Literal('hole')])),
    /** When the last repair ended (ms epoch). */
    rat: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  strict,
);
export type VerifyReport = Static<typeof VerifyReport>;
/**
 * Range repair, first step: the digests and document counts of the `2^bits` sub-ranges of each
 * range `ps` (of depth `d`) of an unscoped collection, or with `b` of one bucket of a scoped
 * collection the device holds (its documents only), as the hub holds it now (`rangesums`).
 */
export const RangesMessage = message(
  'ranges',
  Type.Object(
    {
      id: Type.Integer({ minimum: 0 }),
      c: CollectionName,
      d: RangeDepth,
      ps: Type.Array(RangeId, { minItems: 1, maxItems: MAX_RANGES }),
      bits: Type.Integer({ minimum: 0, maximum: 8 }),
      b: Type.Optional(BucketId),
    },
    strict,
  ),
);
/**
 * Range repair, last step: the documents (tombstones included) of the ranges `ps` (of depth `d`)
 * of a collection, or with `b` of one of its buckets, in key order after `after`, as the hub
 * holds them now (`refetched`).
 */
export const RefetchMessage = message(
  'refetch',
  Type.Object(
    {
      id: Type.Integer({ minimum: 0 }),
      c: CollectionName,
      d: RangeDepth,
      ps: Type.Array(RangeId, { minItems: 1, maxItems: MAX_RANGES }),
      after: Type.Optional(Key),
      b: Type.Optional(BucketId),
    },
    strict,
  ),
);
/**
 * The hub's digest of each collection a status report asked to verify, at the LSN the report
 * said the device had applied (`[collection, lsn, digest]`); a collection whose digest at that
 * LSN the hub no longer knows (retention) is left out. `bs`: of each bucket the report asked
 * (`vb`), `[bucket, lsn, digest]` with the device's LSN, for those whose head is at or below
 * it only: the device then holds every change of the bucket, and its documents at no later
 * version, so its digest compares with the bucket's now. A bucket that moved on is left out.
 */
export const DigestsMessage = message(
  'digests',
  Type.Object(
    {
      hlc: Hlc,
      epoch: Type.Optional(Epoch),
      ds: Type.Array(Type.Tuple([CollectionName, Lsn, Digest]), { maxItems: 1024 }),
      bs: Type.Optional(Type.Array(Type.Tuple([BucketId, Lsn, Digest]), { maxItems: MAX_BUCKETS })),
    },
    strict,
  ),
);
/** Answers `ranges`: for each range of `ps`, its sub-ranges' digests (`ds`) and document counts (`ns`), as of the hub's `lsn` (`b` echoes the question). */
export const RangeSumsMessage = message(
  'rangesums',
  Type.Object(
    {
      id: Type.Integer({ minimum: 0 }),
      c: CollectionName,
      lsn: Lsn,
      hlc: Hlc,
      epoch: Type.Optional(Epoch),
      d: RangeDepth,
      ps: Type.Array(RangeId, { maxItems: MAX_RANGES }),
      bits: Type.Integer({ minimum: 0, maximum: 8 }),
      ds: Type.Array(Type.Array(Digest, { maxItems: 256 }), { maxItems: MAX_RANGES }),
      ns: Type.Array(Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 256 }), { maxItems: MAX_RANGES }),
      b: Type.Optional(BucketId),
    },
    strict,
  ),
);
/**
 * Answers `refetch`: one page of the ranges' documents as of the hub's `lsn`, in key order from
 * after `after` through the last one; `next` (the last key) when more follow. Every document of
 * those ranges in that window is here: one the device holds that is not, the hub does not have
 * (with `b`: not in that bucket). A bucket's documents carry their buckets (`bk`).
 */
export const RefetchedMessage = message(
  'refetched',
  Type.Object(
    {
      id: Type.Integer({ minimum: 0 }),
      c: CollectionName,
      lsn: Lsn,
      hlc: Hlc,
      epoch: Type.Optional(Epoch),
      d: RangeDepth,
      ps: Type.Array(RangeId, { maxItems: MAX_RANGES }),
      after: Type.Optional(Key),
      docs: Type.Array(Change),
      next: Type.Optional(Key),
      b: Type.Optional(BucketId),
    },
    strict,
  ),
);

export type RangesMessage = Static<typeof RangesMessage>;
export type RefetchMessage = Static<typeof RefetchMessage>;
export type DigestsMessage = Static<typeof DigestsMessage>;
export type RangeSumsMessage = Static<typeof RangeSumsMessage>;
export type RefetchedMessage = Static<typeof RefetchedMessage>;
