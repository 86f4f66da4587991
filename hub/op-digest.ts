import { createHash } from 'node:crypto';
import { encodeCbor } from '../shared/codec.js';
import type { WriteOp } from '../shared/messages.js';

/** CBOR head of a 6-item array: the digest covers `[c, k, op, v, hlc, base]`. */
const SIX_ITEMS = Buffer.from([0x86]);

/**
 * Fingerprint of an op's content, to tell a redelivery from a different write under the same
 * seq (a device restored from a backup; its HLCs may repeat too if its clock is stuck). The
 * hash of the CBOR array `[c, k, op, v, hlc, base]`, fed in parts so that a value the caller has
 * already encoded is not encoded again (CBOR concatenates: same bytes as encoding the array).
 */
export function digestOf(op: Omit<WriteOp, 'seq'>, encodedValue?: Buffer): string {
  let value = encodedValue;
  if (!value) {
    try {
      value = encodeCbor(op.v ?? null);
    } catch {
      // A value too deep to encode again is rejected anyway; its digest must not fail the commit.
      value = encodeCbor('unencodable');
    }
  }
  return createHash('sha256')
    .update(SIX_ITEMS)
    .update(encodeCbor([op.c, op.k, op.op]).subarray(1))
    .update(value)
    .update(encodeCbor([op.hlc, op.base ?? 0]).subarray(1))
    .digest('base64url')
    .slice(0, 22);
}
