import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { VerificationBook } from '../../agent/verification-book.js';
import { Verifier } from '../../agent/verifier.js';
import { inRanges } from '../../shared/digest.js';
import type { Change, DownMessage, UpMessage } from '../../shared/messages.js';
import { DEFAULT_PARTITION } from '../../shared/topics.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';
import { byHand, digestOf, many, newest, tallyOf } from './store/digest-fixtures.js';
import { openStore } from './store/fixtures.js';

const HLC = '0000018c2a3b4c5d';

/**
 * The verifier's repair over a real replica, the hub's answers worked out here from the
 * changes the replica was sent (the truth): it narrows a mismatch to the ranges that differ and
 * fetches their documents only, and gives up a repair the hub never answers.
 */
describe('repairing a replica by key ranges', () => {
  function setUp(answerTimeoutMs = 10_000): {
    verifier: Verifier;
    store: ReturnType<typeof openStore>;
    dir: string;
    sent: UpMessage[];
    truth: Change[];
  } {
    const dir = tempDir('verifier');
    const store = openStore(dir);
    const changes = many(1, 10_000);
    store.replica.applyChanges(DEFAULT_PARTITION, changes, 10_000);
    const sent: UpMessage[] = [];
    const verifier = new Verifier(
      store,
      new VerificationBook(store.settings),
      { send: (m) => (sent.push(m), true), onRepaired: () => undefined, requestStatus: () => undefined },
      { partition: DEFAULT_PARTITION, verifiable: () => true, verifyIntervalMs: 60_000, answerTimeoutMs },
      pino({ level: 'silent' }),
    );
    return { verifier, store, dir, sent, truth: newest(changes) };
  }

  /** Answers each question as a hub holding `truth` would, until the verifier asks no more; returns the documents sent. */
  function answerAll(verifier: Verifier, sent: UpMessage[], truth: readonly Change[]): number {
    let documents = 0;
    for (let answered = 0; answered < sent.length; answered++) {
      const [type, ask] = sent[answered]!;
      let answer: DownMessage;
      if (type === 'ranges') {
        const { digests, counts } = tallyOf(truth, ask.d, ask.ps, ask.bits);
        answer = [
          'rangesums',
          { id: ask.id, c: ask.c, lsn: 10_000, hlc: HLC, d: ask.d, ps: ask.ps, bits: ask.bits, ds: digests, ns: counts },
        ];
      } else if (type === 'refetch') {
        const docs = truth.filter((ch) => inRanges(ch.k, ask.d, new Set(ask.ps))).sort((a, b) => (a.k < b.k ? -1 : 1));
        documents += docs.length;
        answer = ['refetched', { id: ask.id, c: ask.c, lsn: 10_000, hlc: HLC, d: ask.d, ps: ask.ps, docs }];
      } else {
        continue;
      }
      verifier.onMessage(answer, 100);
    }
    return documents;
  }

  it('finds lost rows, a rotten value and a phantom through a few ranges, and fetches little more than them', () => {
    const { verifier, store, dir, sent, truth } = setUp();
    byHand(dir, (db) => {
      db.prepare("DELETE FROM documents WHERE key IN ('k10', 'k7777')").run();
      // Rot that a bug left consistent with its hash would look like: only the digest can tell.
      db.prepare("UPDATE documents SET hash = (hash + 1) % 4503599627370496, value = x'01' WHERE key = 'k1500'").run();
      db.prepare(
        "INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, hash) VALUES ('docs', 'ghost', x'01', 0, 5, ?, 'hub', 12345)",
      ).run(HLC);
    });
    expect(store.replica.digest('docs')).not.toBe(digestOf(truth));
    expect(verifier.check('docs', 10_000, digestOf(truth), 'digest')).toBe(true);
    const fetched = answerAll(verifier, sent, truth);
    expect(store.replica.digest('docs')).toBe(digestOf(truth));
    expect(verifier.repairing).toEqual([]);
    // Four damaged documents of 10,000 (about 39 a range of depth 8): narrowed one level further,
    // a few sub-ranges' documents came, not the ranges', let alone the collection.
    expect(fetched).toBeGreaterThanOrEqual(3);
    expect(fetched).toBeLessThan(60);
    expect(sent[0]).toEqual(['ranges', expect.objectContaining({ d: 0, ps: [0], bits: 8 })]);
    expect(sent[1]).toEqual(['ranges', expect.objectContaining({ d: 8 })]);
    const report = new VerificationBook(store.settings).report;
    expect(report).toMatchObject({ found: 1, repaired: 1, docs: 4, cause: 'digest' });
    // The repaired copy now matches: checked again, nothing more is asked.
    const asked = sent.length;
    expect(verifier.check('docs', 10_000, digestOf(truth), 'digest')).toBe(true);
    expect(sent).toHaveLength(asked);
  });

  it('refetches the whole collection when most of it differs, rather than narrowing', () => {
    const { verifier, store, dir, sent, truth } = setUp();
    byHand(dir, (db) => db.prepare("DELETE FROM documents WHERE key >= 'k2'").run());
    verifier.check('docs', 10_000, digestOf(truth), 'hole');
    answerAll(verifier, sent, truth);
    expect(sent.map((m) => m[0])).toEqual(['ranges', 'refetch']);
    expect(sent[1]).toEqual(['refetch', expect.objectContaining({ d: 0, ps: [0] })]);
    expect(store.replica.digest('docs')).toBe(digestOf(truth));
  });

  it('gives a repair up when the hub never answers, after asking a few times', async () => {
    const { verifier, dir, sent, truth } = setUp(30);
    byHand(dir, (db) => db.prepare("DELETE FROM documents WHERE key = 'k3'").run());
    verifier.start();
    try {
      verifier.check('docs', 10_000, digestOf(truth), 'digest');
      await waitFor('the repair given up', () => verifier.repairing.length === 0, 5_000);
      expect(sent.filter((m) => m[0] === 'ranges').length).toBe(5);
    } finally {
      verifier.stop();
    }
  });
});
