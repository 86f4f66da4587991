import { decodeCbor } from '../../shared/codec.js';
import type { Hlc } from '../../shared/hlc.js';
import type { JsonValue } from '../../shared/values.js';

export type WriteKind = 'put' | 'patch' | 'del';

/** An app's write, on its way into the outbox. */
export interface NewWrite {
  /** The hub partition whose sequence space the write joins (its collection's, as known when it is stored). */
  partition: string;
  collection: string;
  key: string;
  op: WriteKind;
  /** The value's bytes, encoded once when the app wrote it (shared/value-bytes.ts): stored and uploaded as they are. */
  value: Buffer | undefined;
  hlc: Hlc;
  /** The version the write is made against; defaults to the replica's current version. */
  base?: number;
  /** Ask the hub to report once this many other agents have applied the write. */
  rep?: number;
}

/** A write as an outbox row holds it: its place in its partition's sequence, its value still CBOR. */
export interface StoredWrite {
  partition: string;
  seq: number;
  collection: string;
  key: string;
  op: WriteKind;
  value: Buffer | null;
}

/** A value as the outbox and the replica keep it (CBOR; NULL for none). */
export function decodeValue(value: Buffer | null): JsonValue | undefined {
  return value === null ? undefined : (decodeCbor(value) as JsonValue);
}
