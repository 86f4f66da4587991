import { Type, type Static } from '@sinclair/typebox';
import { HubStatusMessage } from './hub-status-message.js';
import { limits } from './limits.js';
import {
  BucketId,
  Change,
  CollectionName,
  Digest,
  Epoch,
  Hlc,
  Incarnation,
  Key,
  Lsn,
  MAX_BUCKETS,
  message,
  Seq,
  strict,
  ValueBytes,
} from './message-parts.js';
import {
  BlobChunkMessage,
  BlobGetMessage,
  BlobGotMessage,
  BlobHaveMessage,
  BlobNeedMessage,
  BlobNoneMessage,
  BlobPartMessage,
} from './blob-messages.js';
import { LostAckMessage, LostMessage } from './lost-messages.js';
import { BudgetMessage, TransferReport } from './budget-messages.js';
import { DigestsMessage, RangeSumsMessage, RangesMessage, RefetchedMessage, RefetchMessage, VerifyReport } from './verify-messages.js';

export { BucketId, Change } from './message-parts.js';
export * from './verify-messages.js';
export * from './lost-messages.js';
export * from './budget-messages.js';
export * from './blob-messages.js';

/**
 * Every message is a CBOR array `[type, body]` whose first element names its type (no CBOR
 * tags: the codec refuses them); one union per direction. Types are derived from the schemas,
 * and the codec validates against them right after decoding, so nothing unvalidated travels
 * inward. Field names are short because they cross metered links once per write.
 */

/** One write as the agent made it: identity `(agent, inc, seq)`, an HLC, the base version. */
export const WriteOp = Type.Object(
  {
    seq: Seq,
    c: CollectionName,
    k: Key,
    /**
     * `skip` stands in for a write the agent gave up before uploading (expired, or dropped on
     * overflow): it keeps the sequence contiguous; `v` says why. The hub records it as rejected.
     */
    op: Type.Union([Type.Literal('put'), Type.Literal('patch'), Type.Literal('del'), Type.Literal('skip')]),
    /** Value for put, fields for patch, the reason for skip (each CBOR-encoded, ValueBytes); absent for del. */
    v: Type.Optional(ValueBytes),
    hlc: Hlc,
    /** Version (LSN) of the document the write was made against; 0 = absent. */
    base: Type.Optional(Lsn),
    /** Ask the hub to report when this many other agents have applied the write. */
    rep: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  },
  strict,
);
export type WriteOp = Static<typeof WriteOp>;

export const OpOutcome = Type.Union([
  Type.Literal('committed'),
  Type.Literal('rejected'),
  Type.Literal('conflict'),
  Type.Literal('duplicate'),
]);
export type OpOutcome = Static<typeof OpOutcome>;

/**
 * The outcome of one op. `dup` marks a re-ack of an op the hub had already processed: the
 * outcome is the original one. `duplicate` alone means the original outcome is no longer kept.
 */
export const OpResult = Type.Object(
  {
    seq: Seq,
    outcome: OpOutcome,
    lsn: Type.Optional(Lsn),
    reason: Type.Optional(Type.String({ maxLength: 64 })),
    detail: Type.Optional(Type.String({ maxLength: 1024 })),
    dup: Type.Optional(Type.Boolean()),
  },
  strict,
);
export type OpResult = Static<typeof OpResult>;

// ---- agent → hub (`up`)

export const BatchMessage = message(
  'batch',
  Type.Object({ inc: Incarnation, ops: Type.Array(WriteOp, { minItems: 1, maxItems: limits.maxBatchOps }) }, strict),
);
export const PullMessage = message(
  'pull',
  Type.Object(
    {
      /** Echoed in the answer, so that a late or duplicated answer to an earlier pull is recognised. */
      id: Type.Integer({ minimum: 0 }),
      /** Send changes with an LSN greater than this. */
      from: Lsn,
      /** Collections to include; absent means all. */
      cs: Type.Optional(Type.Array(CollectionName, { maxItems: 1024 })),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
      /** Continue a snapshot: its LSN and the last document received. */
      snap: Type.Optional(Type.Object({ lsn: Lsn, after: Type.Tuple([CollectionName, Key]) }, strict)),
      /** Pull one bucket of the device's scope instead of the unscoped collections (`cs` is then ignored). */
      b: Type.Optional(BucketId),
      /**
       * With `b`: the other buckets this device holds, each applied up to an LSN. A snapshot of
       * `b` sends the documents one of them already brought at their current version as tags.
       */
      held: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9_-]{16}$' }), Lsn, { maxProperties: MAX_BUCKETS })),
    },
    strict,
  ),
);
/** What the agent has applied, per collection; the hub tracks lag and replica acknowledgements with it. */
export const StatusMessage = message(
  'status',
  Type.Object(
    {
      applied: Type.Record(Type.String({ maxLength: 256 }), Lsn),
      outbox: Type.Integer({ minimum: 0 }),
      /** Age of the oldest write waiting to be uploaded, in ms. */
      oldest: Type.Optional(Type.Integer({ minimum: 0 })),
      /** The agent's software version. */
      ver: Type.Optional(Type.String({ maxLength: 64 })),
      /**
       * Verify: the hub answers with `digests`, its digest of each collection named here at the
       * LSN given (where the device's copy of it stood when it took its own digest: that may be
       * behind `applied`, which moves on while the report waits to go).
       */
      v: Type.Optional(Type.Record(CollectionName, Lsn, { maxProperties: 1024 })),
      /**
       * Verify buckets: the hub answers `digests` (`bs`) with its digest of each bucket named
       * here whose head is at or below the LSN given (the bucket's cursor when the device took
       * its own digest of the bucket).
       */
      vb: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9_-]{16}$' }), Lsn, { maxProperties: MAX_BUCKETS })),
      /** What verifying this device's copy found and repaired (see VerifyReport). */
      vf: Type.Optional(VerifyReport),
      /**
       * The device's transfer budget (agent/transfer-budget.ts), when it has one: each period's
       * budget and spend in bytes, and the writes (`wd`) and blobs (`wb`) waiting for lack of it.
       */
      tb: Type.Optional(TransferReport),
      /** How far each bucket of its scope is applied (0 while it joins one): its lag within its scope. */
      bs: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9_-]{16}$' }), Lsn, { maxProperties: MAX_BUCKETS })),
      /**
       * Its committed writes of incarnation `inc` still waiting for replicas (durability
       * `{replicas: N}`), as `[seq, lsn, collection, replicas]`: the hub keeps waits in memory,
       * and learns them again this way after a restart or a failover.
       */
      waits: Type.Optional(
        Type.Object(
          {
            inc: Incarnation,
            list: Type.Array(Type.Tuple([Seq, Lsn, CollectionName, Type.Integer({ minimum: 1, maximum: 1000 })]), { maxItems: 1000 }),
          },
          strict,
        ),
      ),
    },
    strict,
  ),
);
/** One connection of a device: a random id its `hello` and its `bye` (its MQTT will) both carry. */
const Session = Type.String({ pattern: '^[0-9a-f]{16}$' });
/**
 * The device is connected and listens on its own topic (sent once its subscriptions are granted):
 * the hub tells it its scope and sends it its buckets' change sets from now on.
 */
export const HelloMessage = message('hello', Type.Object({ s: Session }, strict));
/**
 * The connection `s` is gone: sent by the broker as the device's MQTT will when the connection
 * drops, by the device itself when it closes. The hub stops sending to it (unless a newer
 * connection said hello since).
 */
export const ByeMessage = message('bye', Type.Object({ s: Session }, strict));
export const UpMessage = Type.Union([
  BatchMessage,
  PullMessage,
  StatusMessage,
  LostMessage,
  HelloMessage,
  ByeMessage,
  RangesMessage,
  RefetchMessage,
  BlobHaveMessage,
  BlobChunkMessage,
  BlobGetMessage,
]);
export type UpMessage = Static<typeof UpMessage>;

/**
 * Committed change sets of one collection, to its subscribers; a scoped collection's, of one of
 * its buckets, to each device holding the bucket on its own `down` topic.
 */
export const ChangesMessage = message(
  'changes',
  Type.Object(
    {
      c: CollectionName,
      /** LSN of the previous change set of this collection (0 = none): a subscriber detects gaps. */
      prev: Lsn,
      hlc: Hlc,
      epoch: Type.Optional(Epoch),
      changes: Type.Array(Change, { minItems: 1 }),
      /** A scoped collection's: the bucket it is of (`prev` is then the bucket's previous change set), sent to each device holding it. */
      b: Type.Optional(BucketId),
      /**
       * The digest right after the last change, of the collection (unscoped) or of the bucket
       * `b`: a replica that applied every change up to it compares.
       */
      dg: Type.Optional(Digest),
    },
    strict,
  ),
);
export type ChangesMessage = Static<typeof ChangesMessage>;

// ---- hub → one agent (`down`)

/** `[firstSeq, count, firstLsn]`: consecutive seqs committed at consecutive LSNs (see shared/acks.ts). */
const CommittedRun = Type.Tuple([Seq, Type.Integer({ minimum: 1, maximum: limits.maxBatchOps }), Type.Integer({ minimum: 1 })]);
/**
 * The outcome of every op of a batch: committed ones packed into runs, re-acked committed
 * duplicates into `dupRuns`, the rest one by one in `results`.
 */
export const AckMessage = message(
  'ack',
  Type.Object(
    {
      inc: Incarnation,
      hlc: Hlc,
      epoch: Type.Optional(Epoch),
      results: Type.Array(OpResult),
      runs: Type.Optional(Type.Array(CommittedRun)),
      dupRuns: Type.Optional(Type.Array(CommittedRun)),
    },
    strict,
  ),
);
export const ResyncMessage = message(
  'resync',
  Type.Object({ inc: Incarnation, hlc: Hlc, epoch: Type.Optional(Epoch), expected: Seq }, strict),
);
export const PageMessage = message(
  'page',
  Type.Object(
    {
      /** The pull this answers. */
      id: Type.Integer({ minimum: 0 }),
      from: Lsn,
      /** Every change up to this LSN (for the requested collections) is in this or earlier pages. */
      to: Lsn,
      more: Type.Boolean(),
      hlc: Hlc,
      epoch: Type.Optional(Epoch),
      changes: Type.Array(Change),
      /** The bucket this page is of, echoing the pull. */
      b: Type.Optional(BucketId),
      /**
       * Each collection's digest right after its last change in the page (see ChangesMessage
       * `dg`). A bucket's page (`b`) carries the bucket's digest, keyed by its collection, only
       * when it reaches the bucket's head: the hub knows a bucket's digest now, not at every LSN.
       */
      dg: Type.Optional(Type.Record(CollectionName, Digest)),
    },
    strict,
  ),
);
/**
 * A page of a snapshot, sent instead of log pages when the log no longer reaches back to the
 * agent's watermark. Documents (tombstones included) come in (collection, key) order, each at
 * its current version; once `next` is absent the agent holds everything up to `lsn` and pulls
 * the log from there. `id` and `from` echo the pull it answers.
 */
export const SnapshotMessage = message(
  'snapshot',
  Type.Object(
    {
      /** The pull this answers. */
      id: Type.Integer({ minimum: 0 }),
      from: Lsn,
      lsn: Lsn,
      hlc: Hlc,
      epoch: Type.Optional(Epoch),
      docs: Type.Array(Change),
      next: Type.Optional(Type.Tuple([CollectionName, Key])),
      /** The bucket this snapshot is of, echoing the pull. */
      b: Type.Optional(BucketId),
    },
    strict,
  ),
);
export const ErrorMessage = message(
  'error',
  Type.Object({ code: Type.String({ maxLength: 64 }), message: Type.String({ maxLength: 4096 }) }, strict),
);
/**
 * The hub already holds different writes under this incarnation up to `seq` (the device was
 * restored from an old backup): the agent must start a new incarnation and resend its queue.
 */
export const ReincarnateMessage = message(
  'reincarnate',
  Type.Object({ inc: Incarnation, hlc: Hlc, epoch: Type.Optional(Epoch), seq: Seq }, strict),
);

/** Writes that asked for `rep` replicas: that many other agents have now applied them. */
export const ReplicatedMessage = message(
  'replicated',
  Type.Object({ inc: Incarnation, hlc: Hlc, epoch: Type.Optional(Epoch), seqs: Type.Array(Seq) }, strict),
);
/**
 * The device's scope: the scoped collections, and the buckets it holds now with each one's
 * newest LSN. Sent when it subscribes and whenever its scope changes (its labels, the config).
 * It pulls the buckets it joins, evicts the documents it no longer holds through any, and
 * catches up on the others from where it stopped.
 */
export const ScopeMessage = message(
  'scope',
  Type.Object(
    {
      hlc: Hlc,
      epoch: Type.Optional(Epoch),
      cs: Type.Array(CollectionName, { maxItems: 1024 }),
      bs: Type.Array(Type.Tuple([BucketId, Lsn]), { maxItems: 100_000 }),
      /**
       * Each bucket's collection, as its index in `cs` (in the order of `bs`): a bucket's id does
       * not say it, and verifying a bucket asks of its collection, even when the device holds
       * none of its documents (all of them lost).
       */
      bc: Type.Optional(Type.Array(Type.Integer({ minimum: 0, maximum: 1023 }), { maxItems: 100_000 })),
    },
    strict,
  ),
);
export type ScopeMessage = Static<typeof ScopeMessage>;

export const DownMessage = Type.Union([
  AckMessage,
  ResyncMessage,
  PageMessage,
  SnapshotMessage,
  ErrorMessage,
  ReplicatedMessage,
  ReincarnateMessage,
  LostAckMessage,
  ScopeMessage,
  DigestsMessage,
  RangeSumsMessage,
  RefetchedMessage,
  // A scoped collection's change set, of one bucket, comes on the device's own topic.
  ChangesMessage,
  BlobNeedMessage,
  BlobGotMessage,
  BlobPartMessage,
  BlobNoneMessage,
  BudgetMessage,
]);
export type DownMessage = Static<typeof DownMessage>;

// ---- the retained hub status (shared/hub-status-message.ts)

export { CollectionPolicy, HubStatusMessage } from './hub-status-message.js';

export const BroadcastMessage = Type.Union([ChangesMessage, HubStatusMessage]);
export type BroadcastMessage = Static<typeof BroadcastMessage>;

export type BatchMessage = Static<typeof BatchMessage>;
export type PullMessage = Static<typeof PullMessage>;
export type AckMessage = Static<typeof AckMessage>;
export type ResyncMessage = Static<typeof ResyncMessage>;
export type PageMessage = Static<typeof PageMessage>;
export type ErrorMessage = Static<typeof ErrorMessage>;
export type StatusMessage = Static<typeof StatusMessage>;
export type ReplicatedMessage = Static<typeof ReplicatedMessage>;
export type SnapshotMessage = Static<typeof SnapshotMessage>;
export type ReincarnateMessage = Static<typeof ReincarnateMessage>;
