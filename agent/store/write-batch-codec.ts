import { compress, decodeCbor, decompressStored, encodeCbor } from '../../shared/codec.js';
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
 * 512 bytes and over are stored raw-deflated when that saves an eighth, by the wire's own
 * `compress` (shared/codec.ts): fewer pages written to a device's flash for each batch.
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
  return compress(encodeCbor([collections, entries]));
}

export function decodeWriteBatch(blob: Buffer, createdAt: number): BatchedWriteFields[] {
  const [collections, entries] = decodeCbor(decompressStored(blob)) as [string[], Entry[]];
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
