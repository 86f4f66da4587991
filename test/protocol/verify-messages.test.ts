import { describe, expect, it } from 'vitest';
import { broadcastCodec, downCodec, upCodec } from '../../shared/codec.js';
import { InvalidMessageError } from '../../shared/errors.js';
import { MAX_RANGES, type BroadcastMessage, type DownMessage, type UpMessage } from '../../shared/messages.js';
import { encodeValue } from '../../shared/value-bytes.js';

const HLC = '0000018c2a3b4c5d';
const DIGEST = 2 ** 52 - 1;

/** Protocol 4: content digests on change sets and pages, verification on status reports, range repair. */
describe('protocol 4: digests and range repair', () => {
  it('round-trips every verification message and the digests change sets and pages carry', () => {
    const up: UpMessage[] = [
      [
        'status',
        {
          applied: { notes: 7 },
          outbox: 0,
          v: { notes: 6 },
          vf: { found: 2, repaired: 1, docs: 3, bytes: 4096, cause: 'scrub', at: 1, lsn: 7, rat: 2 },
        },
      ],
      ['ranges', { id: 1, c: 'notes', d: 0, ps: [0], bits: 8 }],
      ['refetch', { id: 2, c: 'notes', d: 32, ps: [2 ** 32 - 1], after: 'k' }],
    ];
    const down: DownMessage[] = [
      ['digests', { hlc: HLC, ds: [['notes', 7, DIGEST]] }],
      ['rangesums', { id: 1, c: 'notes', lsn: 9, hlc: HLC, d: 0, ps: [0], bits: 1, ds: [[0, DIGEST]], ns: [[0, 3]] }],
      [
        'refetched',
        {
          id: 2,
          c: 'notes',
          lsn: 9,
          hlc: HLC,
          d: 32,
          ps: [5],
          docs: [
            { lsn: 3, c: 'notes', k: 'a', op: 'del', hlc: HLC, o: 'hub' },
            { lsn: 4, c: 'notes', k: 'b', op: 'put', v: encodeValue({ n: 1 }), hlc: HLC, o: 'hub' },
          ],
        },
      ],
      ['page', { id: 3, from: 0, to: 9, more: false, hlc: HLC, changes: [], dg: { notes: DIGEST } }],
    ];
    for (const message of up) expect(upCodec.decode(upCodec.encode(message))).toEqual(message);
    for (const message of down) expect(downCodec.decode(downCodec.encode(message))).toEqual(message);
    const changes: BroadcastMessage = [
      'changes',
      { c: 'notes', prev: 0, hlc: HLC, changes: [{ lsn: 1, c: 'notes', k: 'a', op: 'put', v: encodeValue(1), hlc: HLC, o: 'hub' }], dg: 5 },
    ];
    expect(broadcastCodec.decode(broadcastCodec.encode(changes))).toEqual(changes);
  });

  it.each([
    ['a digest of 2^52', ['digests', { hlc: HLC, ds: [['notes', 1, 2 ** 52]] }], 'down'],
    ['sub-ranges 2^9 ways', ['ranges', { id: 1, c: 'notes', d: 0, ps: [0], bits: 9 }], 'up'],
    ['a range deeper than 32 bits', ['refetch', { id: 1, c: 'notes', d: 33, ps: [0] }], 'up'],
    ['no range', ['refetch', { id: 1, c: 'notes', d: 8, ps: [] }], 'up'],
    ['too many ranges', ['ranges', { id: 1, c: 'notes', d: 16, ps: Array.from({ length: MAX_RANGES + 1 }, (_, i) => i), bits: 0 }], 'up'],
    [
      'an unknown repair cause',
      ['status', { applied: {}, outbox: 0, vf: { found: 0, repaired: 0, docs: 0, bytes: 0, cause: 'guess' } }],
      'up',
    ],
  ])('refuses %s', (_, message, direction) => {
    const codec = direction === 'up' ? upCodec : downCodec;
    expect(() => codec.decode(codec.encode(message as never))).toThrow(InvalidMessageError);
  });
});
