import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { newOutcomes, packAck, unpackAck } from '../../shared/acks.js';
import { downCodec } from '../../shared/codec.js';
import type { OpResult } from '../../shared/messages.js';

const INC = 'a'.repeat(32);
const HLC = '0000018f00000001';

/** Results as a hub produces them: seqs ascending, committed ones with an LSN, some re-acks. */
const results = fc
  .array(
    fc.record({
      gap: fc.nat(2),
      lsnGap: fc.nat(2),
      kind: fc.constantFrom('committed', 'committed', 'committed', 'dup', 'rejected', 'conflict', 'duplicate'),
    }),
    { maxLength: 60 },
  )
  .map((steps) => {
    let seq = 0;
    let lsn = 0;
    return steps.map(({ gap, lsnGap, kind }): OpResult => {
      seq += 1 + gap;
      lsn += 1 + lsnGap;
      if (kind === 'committed') return { seq, outcome: 'committed', lsn };
      if (kind === 'dup') return { seq, outcome: 'committed', lsn, dup: true };
      if (kind === 'conflict') return { seq, outcome: 'conflict', lsn, reason: 'stale_base' };
      if (kind === 'duplicate') return { seq, outcome: 'duplicate' };
      return { seq, outcome: 'rejected', reason: 'schema', detail: 'no' };
    });
  });

describe('packed acks', () => {
  it('unpack to exactly the results packed, through the wire codec', () => {
    fc.assert(
      fc.property(results, (list) => {
        const wire = downCodec.decode(downCodec.encode(['ack', packAck(INC, HLC, list)]));
        expect(wire[0]).toBe('ack');
        if (wire[0] !== 'ack') return;
        expect(unpackAck(wire[1])).toEqual(list);
        expect(newOutcomes(wire[1]).sort()).toEqual(
          list
            .filter((r) => !r.dup)
            .map((r) => r.outcome)
            .sort(),
        );
      }),
      { numRuns: 300 },
    );
  });

  it('pack a healthy batch into one run of three numbers', () => {
    const batch = Array.from({ length: 500 }, (_, i): OpResult => ({ seq: 101 + i, outcome: 'committed', lsn: 9001 + i }));
    expect(packAck(INC, HLC, batch)).toEqual({ inc: INC, hlc: HLC, results: [], runs: [[101, 500, 9001]] });
  });
});
