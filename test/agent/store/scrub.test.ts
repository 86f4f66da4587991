import { describe, expect, it } from 'vitest';
import { encodeCbor } from '../../../shared/codec.js';
import { DIGEST_MODULUS } from '../../../shared/digest.js';
import { tempDir } from '../../helpers/temp.js';
import { byHand, hashOf, many } from './digest-fixtures.js';
import { change, openStore } from './fixtures.js';

const LANE = 'default';

describe('agent store: scrub', () => {
  it('keeps the digest when a value rots under its version, and the scrub finds it, reading and writing nothing more than asked', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    const docs = many(1, 40);
    store.replica.applyChanges(LANE, [...docs, change(41, 'gone'), change(42, 'o', 'other', 'other')]);
    const digest = store.replica.digest('docs');
    expect(store.replica.scrub(undefined, Infinity)).toEqual({ rotten: [], next: undefined, bytesRead: expect.any(Number) as number });

    byHand(dir, (db) => {
      db.prepare("UPDATE documents SET value = ? WHERE collection = 'docs' AND key = 'k7'").run(encodeCbor({ i: 7, text: 'value 8' }));
      db.prepare("UPDATE documents SET version = 99 WHERE collection = 'docs' AND key = 'k9'").run();
      db.prepare("UPDATE documents SET deleted = 0, value = ? WHERE collection = 'docs' AND key = 'gone'").run(encodeCbor('back'));
      db.prepare("UPDATE documents SET hash = 12345 WHERE collection = 'other' AND key = 'o'").run();
      db.prepare("UPDATE documents SET hash = NULL WHERE collection = 'docs' AND key = 'k20'").run();
    });
    expect(store.replica.digest('docs')).toBe((digest - hashOf(docs[20]!) + DIGEST_MODULUS) % DIGEST_MODULUS);
    const rotten = [
      { collection: 'docs', key: 'gone' },
      { collection: 'docs', key: 'k20' },
      { collection: 'docs', key: 'k7' },
      { collection: 'docs', key: 'k9' },
      { collection: 'other', key: 'o' },
    ];
    expect(store.replica.scrub(undefined, Infinity).rotten).toEqual(rotten);

    // In steps of a few rows, it reads every row once, and says when it reached the end.
    const rowBytes = byHand(
      dir,
      (db) =>
        db.prepare<[], { n: number }>('SELECT sum(length(CAST(key AS BLOB)) + coalesce(length(value), 0)) AS n FROM documents').get()!.n,
    );
    const found: unknown[] = [];
    let after: [string, string] | undefined;
    let steps = 0;
    let read = 0;
    const written = byHand(dir, (db) => {
      const version = (): unknown => db.pragma('data_version', { simple: true });
      const before = version();
      do {
        const step = store.replica.scrub(after, 100);
        expect(step.bytesRead).toBeLessThan(100 + 40); // a row more than the budget at most
        found.push(...step.rotten);
        read += step.bytesRead;
        after = step.next;
        steps += 1;
      } while (after !== undefined);
      return version() !== before; // another connection committed something
    });
    expect(found).toEqual(rotten);
    expect(read).toBe(rowBytes);
    expect(steps).toBeGreaterThan(5);
    expect(written).toBe(false);
  });
});
