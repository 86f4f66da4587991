import { describe, expect, it } from 'vitest';
import type { AgentStore } from '../../../agent/store/agent-store.js';
import { encodeCbor } from '../../../shared/codec.js';
import { keyPosition, rangeOf } from '../../../shared/digest.js';
import type { Change } from '../../../shared/messages.js';
import { tempDir } from '../../helpers/temp.js';
import { byHand, digestOf } from './digest-fixtures.js';
import { appendAll, change, openStore, put } from './fixtures.js';
import type { JsonValue } from '../../../shared/values.js';

const LANE = 'default';
const [A, B, C] = ['AAAAAAAAAAAAAAAA', 'BBBBBBBBBBBBBBBB', 'CCCCCCCCCCCCCCCC'];
const UNBOUNDED = { after: undefined, through: undefined };

const scoped = (lsn: number, k: string, bk: string[], v: JsonValue = { lsn, k }): Change => ({ ...change(lsn, k, v), bk });
const deleted = (lsn: number, k: string, bk: string[]): Change => ({ ...change(lsn, k), bk });
const tag = (lsn: number, k: string, bk: string[]): Change => ({ ...change(lsn, k), op: 'tag', bk });
const byKey = (docs: Change[]): Change[] => [...docs].sort((a, b) => (a.k < b.k ? -1 : 1));

/** What the hub holds of bucket A as of LSN 20: a0…a9 (a3 deleted), and s, also in B. */
const hubA = (): Change[] => [
  ...Array.from({ length: 10 }, (_, i) => (i === 3 ? deleted(i + 1, `a${i}`, [A]) : scoped(i + 1, `a${i}`, [A]))),
  scoped(11, 's', [A, B]),
];

/** A device holding A and B, each followed up to 20 and 12, that applied everything the hub sent. */
function deviceOf(docs: Change[]): { dir: string; store: AgentStore } {
  const dir = tempDir('agent-store');
  const store = openStore(dir);
  store.scope.reconcile(LANE, [A, B], []);
  store.replica.applyBucketSnapshot(LANE, A, docs, 20, undefined, true);
  store.replica.applyBucketSnapshot(LANE, B, [tag(11, 's', [A, B]), scoped(12, 'b', [B])], 12, undefined, true);
  return { dir, store };
}

const rowOf = (dir: string, key: string): unknown =>
  byHand(dir, (db) =>
    db.prepare("SELECT version, deleted, evicted, buckets FROM documents WHERE collection = 'docs' AND key = ?").get(key),
  );

describe('agent store: range repair of a bucket', () => {
  it('puts the bucket back as the hub has it: rot at its version, a lost row and tombstone, phantoms with and without another bucket; newer versions and the outbox stay', () => {
    const hub = hubA();
    const { dir, store } = deviceOf(hub);
    const truthA = digestOf(hub);
    const truthB = store.bucketDigests.digest(B);
    byHand(dir, (db) => {
      db.prepare("UPDATE documents SET value = ? WHERE key = 'a1'").run(encodeCbor('rot'));
      db.prepare("DELETE FROM documents WHERE key IN ('a2', 'a3')").run();
      // Phantoms: rows the device holds through A that the hub does not have in A.
      const phantom = db.prepare(
        "INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, buckets, hash) VALUES ('docs', ?, ?, 0, ?, 'h', 'o', ?, ?)",
      );
      phantom.run('ghost', encodeCbor('x'), 15, JSON.stringify([A]), 111);
      db.prepare(`UPDATE documents SET buckets = '["${B}","${A}"]' WHERE key = 'b'`).run(); // held through B, given A by hand
      phantom.run('later', encodeCbor('x'), 25, JSON.stringify([A]), 333); // newer than the answer
    });
    // Since the answer was read, the device applied a newer a4.
    store.replica.applyBucketChanges(LANE, A, [scoped(21, 'a4', [A], 'newer')], 21, store.scope.held(LANE));
    appendAll(store, [put('a2', { mine: 1 }), put('ghost', { mine: 2 })]);
    expect(store.bucketDigests.digest(A)).not.toBe(truthA);

    const repaired = store.bucketRepair.repair(LANE, 'docs', A, 0, [0], byKey(hub), UNBOUNDED, 20);
    expect(repaired.written.map((w) => w.key)).toEqual(['a1', 'a2', 'a3']);
    expect(repaired.removed.map((r) => r.key)).toEqual(['ghost']);
    expect(repaired.untagged.map((r) => r.key)).toEqual(['b']);
    expect(repaired.bytes).toBe(encodeCbor({ lsn: 2, k: 'a1' }).length + encodeCbor({ lsn: 3, k: 'a2' }).length);

    // A as the hub has it, but a4 as the device applied it since, and the row newer than the answer.
    const a4 = scoped(21, 'a4', [A], 'newer');
    expect(store.bucketDigests.digest(A)).toBe((digestOf([...hub.filter((d) => d.k !== 'a4'), a4]) + 333) % 2 ** 52);
    expect(store.bucketDigests.recount(A)).toBe(store.bucketDigests.digest(A));
    expect(store.bucketDigests.digest(B)).toBe(truthB);
    expect(rowOf(dir, 'a2')).toEqual({ version: 3, deleted: 0, evicted: 0, buckets: JSON.stringify([A]) });
    expect(rowOf(dir, 'a3')).toEqual({ version: 4, deleted: 1, evicted: 0, buckets: JSON.stringify([A]) });
    expect(rowOf(dir, 'ghost')).toEqual({ version: 15, deleted: 1, evicted: 1, buckets: null });
    expect(rowOf(dir, 'b')).toEqual({ version: 12, deleted: 0, evicted: 0, buckets: JSON.stringify([B]) });
    expect(rowOf(dir, 'later')).toMatchObject({ version: 25, evicted: 0 });
    expect(store.replica.read('docs', 'a1', true)?.value).toEqual({ lsn: 2, k: 'a1' });
    expect(store.replica.read('docs', 'a4', true)?.value).toBe('newer');
    expect(store.replica.scrub(undefined, Infinity).rotten.map((r) => r.key)).toEqual(['later']);
    // The outbox is as it was: the pending writes still lie over what the repair wrote or evicted.
    expect(store.outbox.pendingCount()).toBe(2);
    expect(store.replica.read('docs', 'a2')).toMatchObject({ value: { mine: 1 }, pending: true });
    expect(store.replica.read('docs', 'ghost')).toMatchObject({ value: { mine: 2 }, pending: true });
    // Done again, it finds nothing to do.
    expect(store.bucketRepair.repair(LANE, 'docs', A, 0, [0], byKey(hub), UNBOUNDED, 20)).toEqual({
      written: [],
      removed: [],
      untagged: [],
      bytes: 0,
    });
  });

  it('touches only the bucket’s documents in the ranges and the key window asked for', () => {
    const hub = hubA();
    const { dir, store } = deviceOf(hub);
    const ranges = new Set([rangeOf(keyPosition('a5'), 2)]);
    const inRanges = (key: string): boolean => ranges.has(rangeOf(keyPosition(key), 2));
    const window = { after: 'a1', through: 'a7' };
    const asked = hub.filter((d) => inRanges(d.k) && d.k > 'a1' && d.k <= 'a7').map((d) => d.k);
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.length).toBeLessThan(7);
    // A page that lists none of them: each is a phantom, and nothing else is one (b is B's alone).
    const repaired = store.bucketRepair.repair(LANE, 'docs', A, 2, [...ranges], [], window, 20);
    expect(repaired.removed.map((r) => r.key)).toEqual(asked);
    expect(repaired.untagged).toEqual([]);
    for (const k of hub.map((d) => d.k).filter((k) => !asked.includes(k))) expect(rowOf(dir, k)).toMatchObject({ evicted: 0 });
    expect(rowOf(dir, 'b')).toMatchObject({ evicted: 0 });
    // And a page that lists them brings them back.
    const page = byKey(hub).filter((d) => asked.includes(d.k));
    expect(store.bucketRepair.repair(LANE, 'docs', A, 2, [...ranges], page, window, 20).written.map((w) => w.key)).toEqual(asked);
    expect(store.bucketDigests.digest(A)).toBe(digestOf(hub));
  });

  it('stores the buckets a snapshot of the bucket would: not a held bucket it cannot answer for, unless the replica said so for that version', () => {
    const { dir, store } = deviceOf(hubA());
    store.scope.reconcile(LANE, [C], []); // C joined: its snapshot is still to come
    byHand(dir, (db) => db.prepare("DELETE FROM documents WHERE key IN ('a5', 's')").run());
    // The hub at 20: a5 is in A, B and C (B followed up to 12: it will bring 20's word); s, as held, in A and B.
    const docs = [scoped(6, 'a5', [A, B, C]), scoped(11, 's', [A, B])];
    store.replica.applyBucketChanges(LANE, B, [], 30, store.scope.held(LANE)); // B now past 20
    store.bucketRepair.repair(LANE, 'docs', A, 0, [0], docs, UNBOUNDED, 20);
    // B went past the answer and C is not followed: neither is stored for a5, which the device lost.
    expect(rowOf(dir, 'a5')).toMatchObject({ buckets: JSON.stringify([A]) });
    expect(rowOf(dir, 's')).toMatchObject({ buckets: JSON.stringify([A]) });
    // Held at that version, the row's own word on B stays.
    byHand(dir, (db) => db.prepare(`UPDATE documents SET buckets = '["${B}","${A}"]', value = x'00' WHERE key = 's'`).run());
    store.bucketRepair.repair(LANE, 'docs', A, 0, [0], docs, UNBOUNDED, 20);
    expect(rowOf(dir, 's')).toMatchObject({ buckets: JSON.stringify([A, B]) });
    expect(store.replica.read('docs', 's', true)?.value).toEqual({ lsn: 11, k: 's' });
  });
});
