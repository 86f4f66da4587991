import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AgentStore } from '../../../agent/store/agent-store.js';
import { AGENT_MIGRATIONS } from '../../../agent/schema.js';
import { DIGEST_MODULUS } from '../../../shared/digest.js';
import type { Change } from '../../../shared/messages.js';
import { tempDir } from '../../helpers/temp.js';
import { byHand, digestOf, hashOf, tallyOf } from './digest-fixtures.js';
import { change, hlc, openStore } from './fixtures.js';
import type { JsonValue } from '../../../shared/values.js';
import { asBuffer } from '../../../shared/value-bytes.js';

const LANE = 'default';
const [A, B, C] = ['AAAAAAAAAAAAAAAA', 'BBBBBBBBBBBBBBBB', 'CCCCCCCCCCCCCCCC'];

const scoped = (lsn: number, k: string, bk: string[], v: JsonValue = { lsn, k }): Change => ({ ...change(lsn, k, v), bk });
const deleted = (lsn: number, k: string, bk: string[]): Change => ({ ...change(lsn, k), bk });
const out = (lsn: number, k: string): Change => ({ ...change(lsn, k), op: 'out' });
const tag = (lsn: number, k: string, bk: string[]): Change => ({ ...change(lsn, k), op: 'tag', bk });

/** The bucket's digest as kept, which must be what a recount of the rows makes of it (the recount leaves it so). */
function expectBucket(store: AgentStore, bucket: string, docs: Change[]): void {
  const kept = store.bucketDigests.digest(bucket);
  expect(kept).toBe(digestOf(docs));
  expect(store.bucketDigests.recount(bucket)).toBe(kept);
}

describe('agent store: bucket digests', () => {
  it('keeps each bucket at the sum of its held documents’ hashes through snapshots, tags, applies, outs and evictions', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    store.scope.reconcile(LANE, [A, B], []);
    const [a1, b2, c3] = [scoped(1, 'a', [A]), scoped(2, 'b', [A, B]), scoped(3, 'c', [A])];
    store.replica.applyBucketSnapshot(LANE, A, [a1, b2, c3], 3, undefined, true);
    const d4 = scoped(4, 'd', [B]);
    store.replica.applyBucketSnapshot(LANE, B, [tag(2, 'b', [A, B]), d4], 4, undefined, true);
    expectBucket(store, A, [a1, b2, c3]);
    expectBucket(store, B, [b2, d4]);

    // a changes, c is deleted (its tombstone stays in A), b leaves A (B, behind, will bring its change).
    const [a5, c6] = [scoped(5, 'a', [A], 'changed'), deleted(6, 'c', [A])];
    store.replica.applyBucketChanges(LANE, A, [a5, c6, out(7, 'b')], 7, store.scope.held(LANE));
    expectBucket(store, A, [a5, c6]);
    expectBucket(store, B, [b2, d4]);
    const b7 = scoped(7, 'b', [B], 'moved');
    store.replica.applyBucketChanges(LANE, B, [b7], 7, store.scope.held(LANE));
    expectBucket(store, B, [b7, d4]);
    // d leaves B, its only bucket: evicted, it counts nowhere.
    expect(store.replica.applyBucketChanges(LANE, B, [out(8, 'd')], 8, store.scope.held(LANE)).evicted).toHaveLength(1);
    expectBucket(store, B, [b7]);

    // The device leaves A: what it holds through A alone is evicted.
    store.scope.reconcile(LANE, [], [A]);
    store.replica.evictOutside(new Set([B]), ['docs']);
    expectBucket(store, A, []);
    // B caught up by a snapshot begun anew: B leaves every stored list, then each document it names comes back into it.
    store.replica.applyBucketSnapshot(LANE, B, [], 9, ['docs', 'a'], true);
    expectBucket(store, B, []);
    const e9 = scoped(9, 'e', [B, C]);
    store.replica.applyBucketSnapshot(LANE, B, [b7, e9], 9, undefined, false);
    expectBucket(store, B, [b7, e9]);
    expectBucket(store, C, [e9]); // not held, yet named: counted all the same

    store.close();
    const reopened = openStore(dir);
    expect(reopened.bucketDigests.digest(B)).toBe(digestOf([b7, e9]));
    expect(reopened.bucketDigests.digest('none')).toBe(0);
  });

  it('follows rows edited by hand: inserted, deleted, given other buckets or a hash, lists not valid, a bucket named twice; hashes backfilled at open', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    store.scope.reconcile(LANE, [A], []);
    const docs = ['a', 'b', 'c', 'd'].map((k, i) => scoped(i + 1, k, [A]));
    store.replica.applyBucketSnapshot(LANE, A, docs, 4, undefined, true);
    const edit = (sql: string, ...params: unknown[]): void => void byHand(dir, (db) => db.prepare(sql).run(...params));

    edit("DELETE FROM documents WHERE key = 'a'");
    expectBucket(store, A, docs.slice(1));
    edit(`UPDATE documents SET buckets = '["${A}","${B}","${A}"]' WHERE key = 'b'`);
    expectBucket(store, A, docs.slice(1));
    expectBucket(store, B, [docs[1]!]);
    edit("UPDATE documents SET buckets = 'not json' WHERE key = 'c'");
    expectBucket(store, A, [docs[1]!, docs[3]!]);
    edit(`UPDATE documents SET buckets = '["${A}"]' WHERE key = 'c'`);
    expectBucket(store, A, docs.slice(1));
    edit("UPDATE documents SET hash = NULL WHERE key = 'd'");
    expectBucket(store, A, docs.slice(1, 3));
    edit("UPDATE documents SET evicted = 1 WHERE key = 'b'");
    expectBucket(store, B, []);
    edit("UPDATE documents SET evicted = 0 WHERE key = 'b'");
    // A row put there without its hash counts once the store opens and hashes it.
    const late = scoped(9, 'late', [A, C]);
    edit(
      `INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, buckets) VALUES ('docs', 'late', ?, 0, 9, ?, 'op', ?)`,
      asBuffer(late.v!),
      hlc(),
      JSON.stringify([A, C]),
    );
    expect(store.bucketDigests.digest(C)).toBe(0);
    store.close();
    const reopened = openStore(dir);
    expectBucket(reopened, A, [...docs.slice(1), late]);
    expectBucket(reopened, C, [late]);
    // Whatever a hash holds, the sum stays an integer below 2^52.
    edit("UPDATE documents SET hash = -9223372036854775808 WHERE key = 'b'");
    edit("UPDATE documents SET hash = 9223372036854775807 WHERE key = 'c'");
    const digest = reopened.bucketDigests.digest(A);
    expect(Number.isInteger(digest) && digest >= 0 && digest < DIGEST_MODULUS).toBe(true);
    expect(reopened.bucketDigests.recount(A)).toBe(digest);
  });

  it('fills the table from the rows a database of schema 9 holds', () => {
    const dir = tempDir('agent-store-old');
    const db = new Database(join(dir, 'agent.db'));
    for (const migration of AGENT_MIGRATIONS.slice(0, 9)) db.exec(migration);
    db.pragma('user_version = 9');
    const rows = [scoped(1, 'a', [A]), scoped(2, 'b', [A, B]), deleted(3, 'c', [B]), scoped(4, 'stub', [A]), scoped(5, 'unhashed', [B])];
    const insert = db.prepare(
      'INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, buckets, evicted, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    for (const r of rows) {
      const stub = r.k === 'stub';
      const value = r.op === 'del' || stub ? null : asBuffer(r.v!);
      const hash = stub || r.k === 'unhashed' ? null : hashOf(r);
      insert.run(
        r.c,
        r.k,
        value,
        r.op === 'del' || stub ? 1 : 0,
        r.lsn,
        r.hlc,
        r.o,
        stub ? null : JSON.stringify(r.bk),
        stub ? 1 : 0,
        hash,
      );
    }
    db.close();
    const store = openStore(dir);
    expectBucket(store, A, rows.slice(0, 2));
    expectBucket(store, B, [rows[1]!, rows[2]!, rows[4]!]);
  });

  it('sums a bucket’s documents of a collection into ranges as the hub’s tally does, and nothing outside the bucket', () => {
    const store = openStore();
    store.scope.reconcile(LANE, [A, B], []);
    const inA = Array.from({ length: 120 }, (_, i) => (i % 9 === 0 ? deleted(i + 1, `a${i}`, [A]) : scoped(i + 1, `a${i}`, [A])));
    const both = Array.from({ length: 30 }, (_, i) => scoped(200 + i, `ab${i}`, [A, B]));
    store.replica.applyBucketSnapshot(LANE, A, [...inA, ...both], 300, undefined, true);
    store.replica.applyBucketSnapshot(LANE, B, [scoped(301, 'b', [B]), ...both.map((d) => tag(d.lsn, d.k, [A, B]))], 301, undefined, true);
    store.replica.applyChanges(LANE, [change(302, 'a0', 'unscoped', 'other')]);
    const held = [...inA, ...both];
    const top = store.bucketDigests.rangeDigests('docs', A, 0, [0], 4);
    expect(top).toEqual(tallyOf(held, 0, [0], 4));
    expect(top.digests[0]!.reduce((a, b) => (a + b) % DIGEST_MODULUS)).toBe(store.bucketDigests.digest(A));
    const parents = top.counts[0]!.flatMap((n, range) => (n > 0 ? [range] : [])).slice(0, 3);
    expect(store.bucketDigests.rangeDigests('docs', A, 4, parents, 3)).toEqual(tallyOf(held, 4, parents, 3));
    expect(store.bucketDigests.rangeDigests('other', A, 0, [0], 0)).toEqual({ digests: [[0]], counts: [[0]] });
    expect(store.bucketDigests.collectionOf(B)).toBe('docs');
    expect(store.bucketDigests.collectionOf(C)).toBeUndefined();
  });
});
