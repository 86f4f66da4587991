import { Type, type Static } from '@sinclair/typebox';

/** The retained hub status and the collection policies it carries (part of the protocol: shared/messages.ts). */

const Hlc = Type.String({ pattern: '^[0-9a-f]{16}$' });
const Lsn = Type.Integer({ minimum: 0 });
const Epoch = Type.Integer({ minimum: 0 });
const Lineage = Type.String({ pattern: '^[0-9a-f]{32}$' });
const strict = { additionalProperties: false } as const;

const ConflictPolicy = Type.Union([Type.Literal('lww'), Type.Literal('reject'), Type.Literal('merge')]);
const Durability = Type.Union([Type.Literal('local'), Type.Literal('hub')]);
export const CollectionPolicy = Type.Object(
  {
    conflict: ConflictPolicy,
    durability: Durability,
    priority: Type.Union([Type.Literal('high'), Type.Literal('normal')]),
    ttlSeconds: Type.Number({ minimum: 0 }),
    maxPending: Type.Integer({ minimum: 0 }),
    overflow: Type.Union([Type.Literal('reject'), Type.Literal('drop-oldest')]),
    /**
     * The collection holds blobs (shared/blobs.ts): `eager`, devices fetch a document's content as
     * it replicates; `lazy`, on its first read. Absent: plain documents.
     */
    blobs: Type.Optional(Type.Union([Type.Literal('eager'), Type.Literal('lazy')])),
  },
  strict,
);
export type CollectionPolicy = Static<typeof CollectionPolicy>;

/** Retained on the hub topic: who the hub is, and the policies agents follow. */
export const HubStatusMessage = Type.Tuple([
  Type.Literal('hub'),
  Type.Object(
    {
      v: Type.Integer(),
      hlc: Hlc,
      head: Lsn,
      epoch: Type.Optional(Epoch),
      /** The lineage of the hub's database: a new one after every restore from a backup. */
      lin: Lineage,
      /** The LSN the lineage parted from the previous one (the restored database's head); 0 for a database never restored. */
      fork: Lsn,
      /** The partition this status is of; absent = the default partition. */
      part: Type.Optional(Type.String({ pattern: '^[a-z0-9_-]{1,64}$' })),
      /**
       * Collections assigned to partitions other than the default (collection → partition); the
       * default partition's status carries it, and agents route their writes by it.
       */
      parts: Type.Optional(Type.Record(Type.String({ pattern: '^[a-z0-9_-]{1,64}$' }), Type.String({ pattern: '^[a-z0-9_-]{1,64}$' }))),
      collections: Type.Record(Type.String({ pattern: '^[a-z0-9_-]{1,64}$' }), CollectionPolicy),
      undeclared: Type.Union([Type.Literal('allow'), Type.Literal('reject')]),
      /** The config declares transfer budgets: each device is told its own (`budget`) when it says hello. Absent: none is declared. */
      budgets: Type.Optional(Type.Literal(true)),
      defaults: CollectionPolicy,
    },
    strict,
  ),
]);
export type HubStatusMessage = Static<typeof HubStatusMessage>;
