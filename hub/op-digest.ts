import { hash } from 'node:crypto';
import type { WriteOp } from '../shared/messages.js';

/** CBOR head of a 6-item array: the digest covers `[c, k, op, v, hlc, base]`. */
const SIX_ITEMS = 0x86;
/** CBOR `null`: the value of an op that has none (a delete). */
const NO_VALUE = Buffer.from([0xf6]);
/** CBOR major types, in the top three bits of a head. */
const UNSIGNED = 0;
const TEXT = 3 << 5;
const FLOAT64 = 0xfb;

/**
 * Fingerprint of an op's content, to tell a redelivery from a different write under the same
 * seq (a device restored from a backup; its HLCs may repeat too if its clock is stuck). The
 * first 22 base64url characters of the SHA-256 of the CBOR array `[c, k, op, v, hlc, base]`,
 * `v` being the value's bytes as the writer encoded them.
 *
 * The bytes hashed are the same as ever (outcomes stored by an older hub must still match the
 * redeliveries an upgraded device sends, or a plain resend would read as a reused seq), but the
 * array is framed here in one buffer and hashed in one call: encoding the two halves with the
 * general CBOR encoder and feeding an incremental hash cost as much as the rest of validating an op.
 * A cheaper, non-cryptographic hash would do the same job (a device gains nothing by making two
 * of its own writes collide) but would change every stored digest.
 */
export function digestOf(op: Omit<WriteOp, 'seq'>): string {
  const value = op.v ?? NO_VALUE;
  const c = Buffer.byteLength(op.c);
  const k = Buffer.byteLength(op.k);
  const o = op.op.length; // ASCII
  const h = op.hlc.length; // ASCII hex (shared/hlc.ts)
  const base = op.base ?? 0;
  const bytes = Buffer.allocUnsafe(1 + 9 * 5 + c + k + o + value.length + h);
  let at = 0;
  bytes[at++] = SIX_ITEMS;
  at = head(bytes, at, TEXT, c);
  at += bytes.write(op.c, at, 'utf8');
  at = head(bytes, at, TEXT, k);
  at += bytes.write(op.k, at, 'utf8');
  at = head(bytes, at, TEXT, o);
  at += bytes.write(op.op, at, 'latin1');
  bytes.set(value, at);
  at += value.length;
  at = head(bytes, at, TEXT, h);
  at += bytes.write(op.hlc, at, 'latin1');
  at = head(bytes, at, UNSIGNED, base);
  return hash('sha256', bytes.subarray(0, at), 'base64url').slice(0, 22);
}

/** A CBOR head as the codec (cbor-x) writes it: the shortest form up to 32 bits; returns where the item starts. */
function head(bytes: Buffer, at: number, major: number, n: number): number {
  if (n < 24) {
    bytes[at] = major | n;
    return at + 1;
  }
  if (n < 0x100) {
    bytes[at] = major | 24;
    bytes[at + 1] = n;
    return at + 2;
  }
  if (n < 0x10000) {
    bytes[at] = major | 25;
    bytes.writeUInt16BE(n, at + 1);
    return at + 3;
  }
  if (n < 0x100000000) {
    bytes[at] = major | 26;
    bytes.writeUInt32BE(n, at + 1);
    return at + 5;
  }
  // The codec writes a whole number from 2^32 up as a float64 (0xfb), not as a 64-bit integer.
  bytes[at] = FLOAT64;
  bytes.writeDoubleBE(n, at + 1);
  return at + 9;
}
