import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeCbor } from '../../shared/codec.js';
import { digestOf } from '../../hub/op-digest.js';
import { encodeValue } from '../../shared/value-bytes.js';
import { withBytes } from '../helpers/value-bytes.js';

/** How digests were first computed; outcomes stored then must still match redeliveries now. */
const original = (op: { c: string; k: string; op: string; v?: unknown; hlc: string; base?: number }): string =>
  createHash('sha256')
    .update(encodeCbor([op.c, op.k, op.op, op.v ?? null, op.hlc, op.base ?? 0]))
    .digest('base64url')
    .slice(0, 22);

describe('op digest', () => {
  it('equals the hash of the whole CBOR array of the op with its value decoded, as digests were first computed', () => {
    fc.assert(
      fc.property(
        fc.string(),
        fc.string({ maxLength: 600 }),
        fc.constantFrom('put' as const, 'patch' as const, 'del' as const),
        fc.option(fc.jsonValue(), { nil: undefined }),
        fc.option(fc.nat(), { nil: undefined }),
        (c, k, kind, v, base) => {
          const op = { c, k, op: kind, hlc: '0000018f00000001', ...(v !== undefined && { v }), ...(base !== undefined && { base }) };
          // The op as it travels holds its value's bytes; its digest is that of the decoded op.
          expect(digestOf(withBytes(op))).toBe(original(op));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('differs when only the value differs', () => {
    const op = { c: 'notes', k: 'n1', op: 'put' as const, v: encodeValue({ text: 'a' }), hlc: '0000018f00000001' };
    expect(digestOf(op)).not.toBe(digestOf({ ...op, v: encodeValue({ text: 'b' }) }));
  });
});
