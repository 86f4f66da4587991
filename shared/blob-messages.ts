import { Type, type Static } from '@sinclair/typebox';
import { BLOB_CHUNK_BYTES } from './blobs.js';
import { CollectionName, Epoch, Hlc, Key, message, strict } from './message-parts.js';

/**
 * Blob content over MQTT (protocol 6), apart from the log: content travels in chunks of
 * BLOB_CHUNK_BYTES, each answered on its own, so that a transfer resumes at the first chunk
 * missing after a dropped link or a restart on either side. The agent sends them in its
 * lowest-priority lane (agent/blobs/blob-sender.ts): a chunk at a time goes behind writes.
 *
 *   upload    bhave ─► bneed {miss}   bchunk ─► bgot   …   bhave ─► bneed {done}
 *   download  bget {i} ─► bpart … (or bnone)
 */

const Hash = Type.String({ pattern: '^[0-9a-f]{64}$' });
const Size = Type.Integer({ minimum: 0 });
const ChunkIndex = Type.Integer({ minimum: 0 });
const ChunkBytes = Type.Uint8Array({ maxByteLength: BLOB_CHUNK_BYTES });
/** The most chunk indexes one message names: a content's missing chunks are told this many at a time. */
export const MAX_CHUNKS_NAMED = 256;

// ---- agent → hub (`up`)

/** The agent holds content `h` of `n` bytes for collection `c`: which chunks does the hub lack? */
export const BlobHaveMessage = message('bhave', Type.Object({ c: CollectionName, h: Hash, n: Size }, strict));
/** Chunk `i` of content `h` (`n` bytes) for collection `c`. */
export const BlobChunkMessage = message(
  'bchunk',
  Type.Object({ c: CollectionName, h: Hash, n: Size, i: ChunkIndex, d: ChunkBytes }, strict),
);
/** Send chunks `i` of the content `h` that document `c`/`k` names. */
export const BlobGetMessage = message(
  'bget',
  Type.Object({ c: CollectionName, k: Key, h: Hash, i: Type.Array(ChunkIndex, { minItems: 1, maxItems: 16 }) }, strict),
);

// ---- hub → one agent (`down`)

const Refusal = Type.Object({ code: Type.String({ maxLength: 64 }), message: Type.String({ maxLength: 1024 }) }, strict);
/** Like every hub message but an error: the hub's clock, and its epoch when it leads by election. */
const Stamp = { hlc: Hlc, epoch: Type.Optional(Epoch) };

/**
 * The hub's answer to `bhave`: `done`, it holds the content whole and checked (its document may
 * be written now); otherwise the first of the chunks it lacks (`miss`, at most MAX_CHUNKS_NAMED)
 * and how many it lacks in all (`left`). `err`: it will not take this content (the collection
 * holds no blobs, the device may not write it, it is too large); the agent gives it up.
 */
export const BlobNeedMessage = message(
  'bneed',
  Type.Object(
    {
      ...Stamp,
      h: Hash,
      done: Type.Boolean(),
      miss: Type.Array(ChunkIndex, { maxItems: MAX_CHUNKS_NAMED }),
      left: Type.Integer({ minimum: 0 }),
      err: Type.Optional(Refusal),
    },
    strict,
  ),
);
/** Chunk `i` of content `h` is durable at the hub. */
export const BlobGotMessage = message('bgot', Type.Object({ ...Stamp, h: Hash, i: ChunkIndex }, strict));
/** Chunk `i` of content `h` (`n` bytes in all), answering `bget`. */
export const BlobPartMessage = message('bpart', Type.Object({ ...Stamp, h: Hash, n: Size, i: ChunkIndex, d: ChunkBytes }, strict));
/** The hub will not send content `h`: it does not hold it whole, or the device may not read the document. */
export const BlobNoneMessage = message('bnone', Type.Object({ ...Stamp, h: Hash, ...Refusal.properties }, strict));

export type BlobHaveMessage = Static<typeof BlobHaveMessage>;
export type BlobChunkMessage = Static<typeof BlobChunkMessage>;
export type BlobGetMessage = Static<typeof BlobGetMessage>;
export type BlobNeedMessage = Static<typeof BlobNeedMessage>;
export type BlobGotMessage = Static<typeof BlobGotMessage>;
export type BlobPartMessage = Static<typeof BlobPartMessage>;
export type BlobNoneMessage = Static<typeof BlobNoneMessage>;
/** What the hub answers about blob content. */
export type BlobDownMessage = BlobNeedMessage | BlobGotMessage | BlobPartMessage | BlobNoneMessage;
