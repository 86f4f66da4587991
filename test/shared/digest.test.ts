import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DIGEST_MODULUS, documentHash } from '../../shared/digest.js';

/** Computed by the first implementation (a 'buffer' digest read with readUInt32BE). */
const VALUE_HASH = 2253017565468227;
const TOMBSTONE_HASH = 4150096470604944;

/** The hash as shared/digest.ts defines it, spelled out: the first 52 bits of SHA-256 over the framing. */
function definition(collection: string, key: string, version: number, deleted: boolean, value: Uint8Array | null): number {
  const c = Buffer.from(collection, 'utf8');
  const k = Buffer.from(key, 'utf8');
  const lengthOf = (part: Buffer): Buffer => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(part.length);
    return length;
  };
  const versionBytes = Buffer.alloc(8);
  versionBytes.writeDoubleBE(version);
  const parts = [lengthOf(c), c, lengthOf(k), k, versionBytes, Buffer.from([deleted ? 1 : 0])];
  if (value !== null && !deleted) parts.push(Buffer.from(value));
  const sha = createHash('sha256').update(Buffer.concat(parts)).digest();
  return (sha.readUInt32BE(0) % 2 ** 20) * 2 ** 32 + sha.readUInt32BE(4);
}

describe('document hash', () => {
  it('is the first 52 bits of the SHA-256 of the framed document, for any document', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 40 }),
        fc.string({ unit: 'binary', maxLength: 300 }),
        fc.maxSafeNat(),
        fc.boolean(),
        fc.option(fc.uint8Array({ maxLength: 600 }), { nil: null }),
        (collection, key, version, deleted, value) => {
          const h = documentHash(collection, key, version, deleted, value);
          expect(h).toBe(definition(collection, key, version, deleted, value));
          expect(Number.isInteger(h) && h >= 0 && h < DIGEST_MODULUS).toBe(true);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('has not changed: digests stored on hubs and devices are sums of it', () => {
    expect(documentHash('readings', 'r-1', 42, false, Buffer.from([0xa1, 0x61, 0x74, 0x18, 0x15]))).toBe(VALUE_HASH);
    expect(documentHash('readings', 'r-1', 43, true, null)).toBe(TOMBSTONE_HASH);
  });
});
