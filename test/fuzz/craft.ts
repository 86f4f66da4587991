import { randomBytes } from 'node:crypto';
import { encodeCbor } from '../../shared/codec.js';
import { encodeHlc } from '../../shared/hlc.js';

/**
 * Hand-made messages and CBOR for what no well-behaved encoder writes: deep nesting, exotic
 * tags, value sharing. Everything returns raw bytes, so the hub sees exactly what is built here.
 */

export const freshInc = (): string => randomBytes(16).toString('hex');
export const hlcAt = (ms: number): string => encodeHlc(ms, 0);
export const nowHlc = (): string => hlcAt(Date.now());

export type OpKind = 'put' | 'patch' | 'del';

/**
 * A write op as it goes on the wire; loose on purpose, so tests can send what the schema forbids.
 * `v` is the value's CBOR encoding (a byte string) in a well-formed op.
 */
export interface WireOp {
  seq: number;
  c: string;
  k: string;
  op: OpKind;
  v?: unknown;
  hlc: string;
  [field: string]: unknown;
}

export function batchBytes(inc: string, ops: readonly WireOp[]): Buffer {
  return encodeCbor(['batch', { inc, ops }]);
}

/** One put of `v` with the current time as HLC; the value travels as its CBOR encoding. */
export function putOp(seq: number, c: string, k: string, v: unknown): WireOp {
  return { seq, c, k, op: 'put', v: encodeCbor(v), hlc: nowHlc() };
}

const MARKER = 'fuzz:raw-cbor-goes-here';

/**
 * Encodes `build(MARKER)` and swaps the marker's encoding for `raw`: well-formed framing around
 * hostile bytes (a nested or tagged value where the schema expects a document value, say).
 */
export function withRawCbor(build: (marker: string) => unknown, raw: Uint8Array): Buffer {
  const bytes = encodeCbor(build(MARKER));
  const marker = encodeCbor(MARKER);
  const at = bytes.indexOf(marker);
  if (at < 0 || bytes.indexOf(marker, at + 1) >= 0) throw new Error('the marker must occur exactly once');
  return Buffer.concat([bytes.subarray(0, at), raw, bytes.subarray(at + marker.length)]);
}

/** A batch of one put whose value's bytes are `raw` as they are: hostile CBOR the hub must check itself. */
export function putWithRawValue(inc: string, c: string, k: string, raw: Uint8Array): Buffer {
  return batchBytes(inc, [{ ...putOp(1, c, k, null), v: raw }]);
}

/** A batch of one put with `raw` CBOR where its value's byte string belongs: hostile CBOR in the message itself. */
export function putWithRawCborForValue(inc: string, c: string, k: string, raw: Uint8Array): Buffer {
  return withRawCbor((marker) => ['batch', { inc, ops: [{ ...putOp(1, c, k, null), v: marker }] }], raw);
}

/** `depth` nested one-element arrays around the integer 1: `[[[…1…]]]`, one byte a level. */
export function nestedArrays(depth: number): Buffer {
  const bytes = Buffer.alloc(depth + 1, 0x81);
  bytes[depth] = 0x01;
  return bytes;
}

/** `depth` nested one-entry maps around the integer 1: `{a: {a: … 1}}`, three bytes a level. */
export function nestedMaps(depth: number): Buffer {
  const bytes = Buffer.alloc(depth * 3 + 1);
  for (let i = 0; i < depth; i++) bytes.set([0xa1, 0x61, 0x61], i * 3);
  bytes[depth * 3] = 0x01;
  return bytes;
}

/** The CBOR head of a tag (major type 6). */
function tagHead(tag: number): Buffer {
  if (tag < 24) return Buffer.from([0xc0 | tag]);
  if (tag < 0x100) return Buffer.from([0xd8, tag]);
  return Buffer.from([0xd9, tag >> 8, tag & 0xff]);
}

/** `tag(value)`; a Buffer is taken as the value's encoding, anything else is encoded here. */
export function tagged(tag: number, value: unknown): Buffer {
  return Buffer.concat([tagHead(tag), Buffer.isBuffer(value) ? value : encodeCbor(value)]);
}

/** Tag 28 (shareable) around an array that holds tag 29 (shared reference 0): an array that contains itself. */
export const SELF_REFERENCE = Buffer.from([0xd8, 0x1c, 0x81, 0xd8, 0x1d, 0x00]);

/**
 * CBOR value sharing (tags 28/29), the "billion laughs" of CBOR: `[L0, L1, …]` where L0 = [1, 1]
 * and each Li = [L(i-1), L(i-1)] by reference. About 7 bytes a level; 2^(levels+1) leaves.
 */
export function sharedDoubling(levels: number): Buffer {
  const parts: Buffer[] = [tagged(28, [1, 1])];
  for (let i = 1; i < levels; i++) {
    const ref = tagged(29, i - 1);
    parts.push(tagged(28, Buffer.concat([Buffer.from([0x82]), ref, ref])));
  }
  return Buffer.concat([arrayHead(levels), ...parts]);
}

function arrayHead(length: number): Buffer {
  if (length < 24) return Buffer.from([0x80 | length]);
  if (length < 0x100) return Buffer.from([0x98, length]);
  return Buffer.from([0x99, length >> 8, length & 0xff]);
}

/** Tag 2 (unsigned bignum) over `bytes` bytes of 0xff. */
export function bignum(bytes: number): Buffer {
  const head = Buffer.from([0xc2, 0x5a, 0, 0, 0, 0]);
  head.writeUInt32BE(bytes, 2);
  return Buffer.concat([head, Buffer.alloc(bytes, 0xff)]);
}
