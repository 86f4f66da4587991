import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { limits } from './limits.js';

/** The building blocks of the protocol's messages (shared/messages.ts), and the committed change they carry. */

export const Hlc = Type.String({ pattern: '^[0-9a-f]{16}$' });
export const Lsn = Type.Integer({ minimum: 0 });
export const Seq = Type.Integer({ minimum: 1 });
/** Loose on purpose: a bad name is an op outcome (`invalid_collection`), not a broken message. */
export const CollectionName = Type.String({ maxLength: 256 });
export const Key = Type.String({ maxLength: 4 * limits.maxKeyBytes });
export const Incarnation = Type.String({ pattern: '^[0-9a-f]{32}$' });
/** A hub database's lineage: a random id that changes whenever the database is restored from a backup. */
export const Lineage = Type.String({ pattern: '^[0-9a-f]{32}$' });
export const strict = { additionalProperties: false } as const;
/**
 * A scope bucket of a scoped collection, by its id: a digest of the bucket's name (hub/scope-rules.ts),
 * short on the wire and showing no label value.
 */
export const BucketId = Type.String({ pattern: '^[A-Za-z0-9_-]{16}$' });
/** The most buckets one document is in, or one device holds, that a message names. */
export const MAX_BUCKETS = 1024;
/**
 * The leadership epoch of the hub process that sent a message (see hub/leadership.ts): raised at
 * every failover. An agent ignores a message with a lower epoch than one it has seen.
 */
export const Epoch = Type.Integer({ minimum: 0 });

/** A collection's content digest (shared/digest.ts): the sum of its documents' hashes, 52 bits. */
export const Digest = Type.Integer({ minimum: 0, maximum: 2 ** 52 - 1 });

/**
 * A document value as its own CBOR encoding, carried as a byte string (protocol 5). The hub
 * validates it once; from then on the hub's store, log, pages and change sets and every
 * replica hold these same bytes, and only a reader decodes them. Bounded by the message.
 */
export const ValueBytes = Type.Uint8Array({ maxByteLength: limits.maxMessageBytes });

export function message<T extends string, B extends TSchema>(type: T, body: B) {
  return Type.Tuple([Type.Literal(type), body]);
}

/**
 * A committed change as the log holds it: the document's full new state. In a scoped
 * collection, `bk` lists the buckets the document is in after it; a device that holds none of
 * them no longer holds the document. A bucket the document left hears `out` instead: no value,
 * no buckets, only that it left at this LSN. A bucket snapshot sends `tag` (no value) for a
 * document the device already holds at this version (another bucket it holds brought it, or one
 * it was in before the hub's rules changed): the device learns its buckets now.
 */
export const Change = Type.Object(
  {
    lsn: Lsn,
    c: CollectionName,
    k: Key,
    op: Type.Union([Type.Literal('put'), Type.Literal('del'), Type.Literal('out'), Type.Literal('tag')]),
    v: Type.Optional(ValueBytes),
    hlc: Hlc,
    /** Origin: the agent id, or `hub` for writes made at the main site. */
    o: Type.String({ maxLength: 128 }),
    bk: Type.Optional(Type.Array(BucketId, { maxItems: MAX_BUCKETS })),
  },
  strict,
);
export type Change = Static<typeof Change>;
