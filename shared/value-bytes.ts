import { firstTag } from './cbor-tags.js';
import { decodeCbor, decodeOneCbor, encodeCbor } from './codec.js';
import { limits as defaultLimits } from './limits.js';
import { checkValue, type JsonValue, type ValueProblem } from './values.js';

/**
 * Document values travel and rest as their CBOR encoding (ValueBytes in shared/message-parts.ts):
 * the writer encodes a value once, the hub checks it once, and stores, logs, digests and sends
 * those bytes; replicas store them as they arrive. Only a reader decodes.
 */

/** A value's bytes, as its writer makes them. */
export function encodeValue(value: JsonValue): Buffer {
  return encodeCbor(value);
}

/** The same bytes as a Buffer, not copied (stores and drivers bind Buffers). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Bytes this process or the hub checked before (a replica's, a store's): decoded without checks. */
export function decodeValue(bytes: Uint8Array): JsonValue {
  return decodeCbor(bytes) as JsonValue;
}

/**
 * Bytes from a writer, checked as the hub checks what it stores: exactly one CBOR item (no
 * trailing bytes, no tag), plain JSON data within the depth limit, at most `maxBytes` long.
 */
export function parseValue(
  bytes: Uint8Array,
  maxDepth: number = defaultLimits.maxValueDepth,
  maxBytes: number = defaultLimits.maxValueBytes,
): { value: JsonValue } | ValueProblem {
  if (bytes.length > maxBytes) {
    return { reason: 'too_large', detail: `value of ${bytes.length} bytes exceeds the limit of ${maxBytes} bytes` };
  }
  let value: unknown;
  try {
    value = decodeOneCbor(bytes);
  } catch (cause) {
    return { reason: 'invalid_value', detail: `value is not one CBOR data item: ${(cause as Error).message}` };
  }
  const tag = firstTag(bytes);
  if (tag !== undefined) {
    return { reason: 'invalid_value', detail: `value holds CBOR tag ${tag}; values are plain JSON data, with no tags` };
  }
  return checkValue(value, maxDepth) ?? { value: value as JsonValue };
}
