import { constants as zlib, deflateRawSync, inflateRawSync } from 'node:zlib';
import { decodeCbor, encodeCbor } from '../../shared/codec.js';
import type { WriteKind } from './writes.js';

/** A write as a batch holds it; its seq is its batch's first plus its place in it. */
export interface BatchedWriteFields {
  collection: string;
  key: string;
  op: WriteKind;
  value: Buffer | null;
  hlc: string;
  base: number;
  rep: number | null;
  created_at: number;
}

/** Blobs smaller than this are stored as they are: deflate's header would not pay for itself. */
const COMPRESS_FROM_BYTES = 512;
/** CBOR major type 2 (byte string) in the top three bits of the first byte. */
const isByteString = (first: number): boolean => first >> 5 === 2;

type Entry = [
  collectionIndex: number,
  key: string,
  op: WriteKind,
  value: Buffer | null,
  hlc: string,
  base: number,
  rep: number | null,
  age: number,
];

/**
 * A batch's writes as one blob: CBOR `[collections, entries]`, each entry naming its collection
 * by index and its creation time as milliseconds after the batch's own. A batch of similar
 * writes (a sensor's readings) repeats its keys' prefixes, HLCs and value shapes, so blobs of
 * 512 bytes and over are stored raw-deflated when that saves an eighth (then a CBOR byte string,
 * as the wire does it): fewer pages written to a device's flash for each batch.
 */
export function encodeWriteBatch(writes: readonly BatchedWriteFields[], createdAt: number): Buffer {
  const collections: string[] = [];
  const index = new Map<string, number>();
  const entries: Entry[] = writes.map((w) => {
    let i = index.get(w.collection);
    if (i === undefined) {
      i = collections.push(w.collection) - 1;
      index.set(w.collection, i);
    }
    return [i, w.key, w.op, w.value, w.hlc, w.base, w.rep, w.created_at - createdAt];
  });
  const bytes = encodeCbor([collections, entries]);
  if (bytes.length < COMPRESS_FROM_BYTES) return bytes;
  const deflated = deflateRawSync(bytes, { level: zlib.Z_BEST_SPEED });
  return deflated.length < bytes.length - (bytes.length >> 3) ? encodeCbor(deflated) : bytes;
}

export function decodeWriteBatch(blob: Buffer, createdAt: number): BatchedWriteFields[] {
  const bytes = isByteString(blob[0]!) ? inflateRawSync(decodeCbor(blob) as Uint8Array) : blob;
  const [collections, entries] = decodeCbor(bytes) as [string[], Entry[]];
  return entries.map(([i, key, op, value, hlc, base, rep, age]) => ({
    collection: collections[i]!,
    key,
    op,
    // cbor-x may hand back a Uint8Array view; the outbox hands values on as Buffers.
    value: value === null ? null : Buffer.isBuffer(value) ? value : Buffer.from(value),
    hlc,
    base,
    rep,
    created_at: createdAt + age,
  }));
}
