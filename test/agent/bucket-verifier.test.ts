import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { VerificationBook } from '../../agent/verification-book.js';
import { Verifier } from '../../agent/verifier.js';
import { inRanges } from '../../shared/digest.js';
import type { Change, DownMessage, UpMessage } from '../../shared/messages.js';
import { tempDir } from '../helpers/temp.js';
import { byHand, digestOf } from './store/digest-fixtures.js';
import { change, openStore } from './store/fixtures.js';

const HLC = '0000018c2a3b4c5d';
const LANE = 'default';
const [A, B] = ['AAAAAAAAAAAAAAAA', 'BBBBBBBBBBBBBBBB'];

const scoped = (lsn: number, k: string, bk: string[]): Change => ({ ...change(lsn, k, { lsn, k }), bk });

/**
 * The verifier's checks and repair of scope buckets over a real replica: a device holding
 * buckets A (400 documents, applied up to 400) and B (100 more, applied up to 500) of `docs`, the
 * hub's answers worked out here from what the device was sent.
 */
function setUp(): { verifier: Verifier; store: ReturnType<typeof openStore>; dir: string; sent: UpMessage[]; truth: Change[] } {
  const dir = tempDir('verifier');
  const store = openStore(dir);
  store.scope.reconcile(LANE, [A, B], []);
  const truth = Array.from({ length: 400 }, (_, i) => scoped(i + 1, `a${i}`, [A]));
  store.replica.applyBucketSnapshot(LANE, A, truth, 400, undefined, true);
  const inB = Array.from({ length: 100 }, (_, i) => scoped(401 + i, `b${i}`, [B]));
  store.replica.applyBucketSnapshot(LANE, B, inB, 500, undefined, true);
  const sent: UpMessage[] = [];
  const verifier = new Verifier(
    store,
    new VerificationBook(store.settings),
    { send: (m) => (sent.push(m), true), onRepaired: () => undefined, requestStatus: () => undefined },
    { partition: LANE, verifiable: () => false, scopedCollections: () => ['docs'], verifyIntervalMs: 60_000, answerTimeoutMs: 10_000 },
    pino({ level: 'silent' }),
  );
  return { verifier, store, dir, sent, truth };
}

/** Answers each range question as a hub holding `truth` in bucket A would, until the verifier asks no more. */
function answerAll(verifier: Verifier, sent: UpMessage[], truth: readonly Change[]): void {
  for (let answered = 0; answered < sent.length; answered++) {
    const [type, ask] = sent[answered]!;
    let answer: DownMessage;
    if (type === 'ranges') {
      expect(ask.b).toBe(A);
      const tally = { digests: [] as number[][], counts: [] as number[][] };
      for (const parent of ask.ps) {
        const docs = truth.filter((d) => inRanges(d.k, ask.d, new Set([parent])));
        const children = Array.from({ length: 2 ** ask.bits }, (_, child) =>
          docs.filter((d) => inRanges(d.k, ask.d + ask.bits, new Set([parent * 2 ** ask.bits + child]))),
        );
        tally.digests.push(children.map(digestOf));
        tally.counts.push(children.map((c) => c.length));
      }
      answer = [
        'rangesums',
        { id: ask.id, c: ask.c, lsn: 400, hlc: HLC, d: ask.d, ps: ask.ps, bits: ask.bits, ds: tally.digests, ns: tally.counts, b: A },
      ];
    } else if (type === 'refetch') {
      expect(ask.b).toBe(A);
      const docs = truth.filter((ch) => inRanges(ch.k, ask.d, new Set(ask.ps))).sort((a, b) => (a.k < b.k ? -1 : 1));
      answer = ['refetched', { id: ask.id, c: ask.c, lsn: 400, hlc: HLC, d: ask.d, ps: ask.ps, docs, b: A }];
    } else {
      continue;
    }
    verifier.onMessage(answer, 100);
  }
}

describe('verifying scope buckets', () => {
  it('checks a bucket right after its change set only when no other bucket of the collection is applied further', () => {
    const { verifier, store, dir, sent, truth } = setUp();
    byHand(dir, (db) => db.prepare("DELETE FROM documents WHERE key = 'a7'").run());
    // B is applied up to 500: it may have brought a later version of one of A's documents.
    expect(verifier.checkBucket(A, 'docs', 400, digestOf(truth))).toBe(false);
    // Nor at an LSN the bucket is not exactly at.
    expect(verifier.checkBucket(B, 'docs', 499, 0)).toBe(false);
    expect(sent).toEqual([]);
    // Once B is of another collection (its change sets said so), A compares; the repair asks of A alone.
    verifier.checkBucket(B, 'other', 500, store.bucketDigests.digest(B));
    expect(verifier.checkBucket(A, 'docs', 400, digestOf(truth))).toBe(true);
    expect(sent[0]).toEqual(['ranges', expect.objectContaining({ c: 'docs', b: A, d: 0, ps: [0], bits: 8 })]);
    expect(verifier.repairing).toEqual(['docs']);
    answerAll(verifier, sent, truth);
    expect(store.bucketDigests.digest(A)).toBe(digestOf(truth));
    expect(store.replica.read('docs', 'a7', true)?.value).toEqual({ lsn: 8, k: 'a7' });
    expect(verifier.repairing).toEqual([]);
    expect(new VerificationBook(store.settings).report).toMatchObject({ found: 1, repaired: 1, docs: 1, cause: 'hole' });
  });

  it('asks the hub for the digests of the buckets it follows at their cursors, and repairs one that differs; one left out compares later', () => {
    const { verifier, store, dir, sent, truth } = setUp();
    const heldB = store.bucketDigests.digest(B);
    verifier.onConnected();
    // Damage after the digests were taken is compared at the next check, not this one.
    expect(verifier.question()).toEqual({ v: {}, vb: { [A]: 400, [B]: 500 } });
    byHand(dir, (db) => {
      db.prepare("UPDATE documents SET value = x'00', hash = hash + 1 WHERE key = 'a3'").run();
      db.prepare(
        `INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, buckets, hash) VALUES ('docs', 'ghost', x'00', 0, 9, 'h', 'o', '["${A}"]', 1)`,
      ).run();
    });
    verifier.onMessage(['digests', { hlc: HLC, ds: [], bs: [[A, 400, digestOf(truth)]] }], 50);
    expect(sent).toEqual([]);
    expect(verifier.question()).toBeUndefined();

    const v = setUp();
    v.verifier.onConnected();
    v.verifier.question();
    // The hub left B out (it moved on), and says A differs.
    v.verifier.onMessage(['digests', { hlc: HLC, ds: [], bs: [[A, 400, (digestOf(v.truth) + 1) % 2 ** 52]] }], 50);
    expect(v.sent.map((m) => m[0])).toEqual(['ranges']);
    expect(store.bucketDigests.digest(B)).toBe(heldB);

    // The first device's damage, at its next check: a rotten row rewritten, a phantom evicted.
    verifier.onConnected();
    expect(verifier.question()?.vb).toEqual({ [A]: 400, [B]: 500 });
    verifier.onMessage(['digests', { hlc: HLC, ds: [], bs: [[A, 400, digestOf(truth)]] }], 50);
    answerAll(verifier, sent, truth);
    expect(store.bucketDigests.digest(A)).toBe(digestOf(truth));
    expect(store.replica.read('docs', 'ghost', true)).toBeUndefined();
    expect(store.replica.scrub(undefined, Infinity).rotten).toEqual([]);
    expect(new VerificationBook(store.settings).report).toMatchObject({ cause: 'digest', docs: 2 });
  });

  it('recounts a bucket digest that rotted itself, and fetches a rotten row through a bucket it is stored in', () => {
    const { verifier, store, dir, sent, truth } = setUp();
    verifier.checkBucket(B, 'other', 500, store.bucketDigests.digest(B));
    byHand(dir, (db) => db.prepare(`UPDATE bucket_digests SET digest = 42 WHERE bucket = '${A}'`).run());
    expect(verifier.checkBucket(A, 'docs', 400, digestOf(truth))).toBe(true);
    answerAll(verifier, sent, truth);
    expect(sent).toHaveLength(1); // every range matched: nothing fetched
    expect(store.bucketDigests.digest(A)).toBe(digestOf(truth));
    // Checked again, it matches (and the next repair of A need not back off).
    expect(verifier.checkBucket(A, 'docs', 400, digestOf(truth))).toBe(true);
    expect(sent).toHaveLength(1);

    byHand(dir, (db) => db.prepare("UPDATE documents SET value = x'00' WHERE key = 'a9'").run());
    const rotten = store.replica.scrub(undefined, Infinity).rotten;
    expect(rotten).toEqual([{ collection: 'docs', key: 'a9' }]);
    verifier.repairKeys('docs', ['a9']);
    expect(sent[1]).toEqual(['refetch', expect.objectContaining({ c: 'docs', b: A, d: 32 })]);
    answerAll(verifier, sent, truth);
    expect(store.replica.scrub(undefined, Infinity).rotten).toEqual([]);
    expect(store.bucketDigests.digest(A)).toBe(digestOf(truth));
  });
});
