import { decodeValue, encodeValue } from '../../shared/value-bytes.js';
import type { JsonValue } from '../../shared/values.js';
import type { WriteOp } from '../../shared/messages.js';

/**
 * Values travel as their CBOR encoding (`v` of ops, changes and lost documents is a byte string).
 * Tests state values plainly: `withBytes` turns such an item into the one that travels, and
 * `withValue` turns a received one back, to compare with what a test expects.
 */
export function withBytes<T extends { v?: unknown }>(item: T): Omit<T, 'v'> & { v?: Buffer } {
  const { v, ...rest } = item;
  return v === undefined ? rest : { ...rest, v: encodeValue(v as JsonValue) };
}

/** `item` with its value's bytes decoded. */
export function withValue<T extends { v?: Uint8Array }>(item: T): Omit<T, 'v'> & { v?: JsonValue } {
  const { v, ...rest } = item;
  return v === undefined ? rest : { ...rest, v: decoded(v) };
}

/** The decoded value of an item's bytes, or undefined when it has none. */
export function valueOf(item: { v?: Uint8Array } | undefined): JsonValue | undefined {
  return item?.v === undefined ? undefined : decoded(item.v);
}

/** Decodes a copy: decoding leaves a cached view on the Buffer it reads (see plainBytes), and tests look, they do not touch. */
function decoded(bytes: Uint8Array): JsonValue {
  return decodeValue(Buffer.from(bytes));
}

/** A write op as a test states it: its value plain. */
export type PlainWriteOp = Omit<WriteOp, 'v'> & { v?: JsonValue };

/**
 * `data` with every byte string copied into a fresh Buffer, for deep equality of bytes alone:
 * decoding a Buffer leaves a cached view on it (cbor-x sets its `dataView` property), which
 * depends on which code path happened to decode it, not on what it holds.
 */
export function plainBytes<T>(data: T): T {
  if (data instanceof Uint8Array) return Buffer.from(data) as T;
  if (Array.isArray(data)) return data.map(plainBytes) as T;
  if (data !== null && typeof data === 'object' && Object.getPrototypeOf(data) === Object.prototype) {
    return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, plainBytes(v)])) as T;
  }
  return data;
}
