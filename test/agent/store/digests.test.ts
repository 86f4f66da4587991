import { describe, expect, it } from 'vitest';
import { DIGEST_MODULUS, documentHash } from '../../../shared/digest.js';
import type { Change } from '../../../shared/messages.js';
import { tempDir } from '../../helpers/temp.js';
import { byHand, digestOf, hashOf, many, newest, tallyOf } from './digest-fixtures.js';
import { change, hlc, openStore } from './fixtures.js';
import { asBuffer } from '../../../shared/value-bytes.js';

const LANE = 'default';
const [A, B] = ['AAAAAAAAAAAAAAAA', 'BBBBBBBBBBBBBBBB'];

describe('agent store: content digests', () => {
  it('keeps each collection at the sum of its documents’ hashes through applies, overwrites, deletes, replays and snapshots', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    const applied: Change[] = [];
    const apply = (changes: Change[]): void => {
      store.replica.applyChanges(LANE, changes);
      applied.push(...changes);
    };
    apply([...many(1, 50), change(51, 'o1', 'x', 'other'), change(52, 'o2', [1, 2], 'other')]);
    expect(store.replica.digest('docs')).toBe(digestOf(newest(applied)));
    expect(store.replica.digest('docs')).not.toBe(0);

    apply([change(60, 'k1', { i: 1, text: 'changed' }), change(61, 'k2'), change(62, 'new', null), change(63, 'o1', undefined, 'other')]);
    // A replay of older versions lands nowhere, and moves nothing.
    store.replica.applyChanges(LANE, [change(5, 'k1', 'stale'), change(6, 'k2', 'stale')]);
    // A snapshot page: documents as new as some held, newer than others.
    const page = [change(62, 'new', null), change(70, 'k3', 'from the snapshot'), change(71, 'k4')];
    store.replica.applySnapshotPage(LANE, page, 71, undefined);
    applied.push(...page);
    expect(store.replica.digest('docs')).toBe(digestOf(newest(applied)));
    expect(store.replica.digest('other')).toBe(digestOf(newest(applied, 'other')));
    expect(store.replica.digest('none')).toBe(0);

    store.close();
    expect(openStore(dir).replica.digest('docs')).toBe(digestOf(newest(applied)));
  });

  it('counts a scoped document while it is held: eviction takes it out, a stub counts for nothing, a return counts again', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    const inA = (lsn: number, k: string, bk = [A]): Change => ({ ...change(lsn, k, { lsn }), bk });
    store.scope.reconcile(LANE, [A], []);
    store.replica.applyBucketSnapshot(LANE, A, [inA(1, 'a'), inA(2, 'b'), inA(3, 'c', [A, B])], 3, undefined, true);
    expect(store.replica.digest('docs')).toBe(digestOf([inA(1, 'a'), inA(2, 'b'), inA(3, 'c')]));
    // A tag renames buckets only: the document's state, and so its hash, is the same.
    store.replica.applyBucketSnapshot(LANE, A, [{ ...change(2, 'b'), op: 'tag', bk: [B] }], 3, undefined, false);
    expect(store.replica.digest('docs')).toBe(digestOf([inA(1, 'a'), inA(2, 'b'), inA(3, 'c')]));

    const out = (lsn: number, k: string): Change => ({ ...change(lsn, k), op: 'out' });
    const held = store.scope.held(LANE);
    expect(store.replica.applyBucketChanges(LANE, A, [out(4, 'a'), out(5, 'never-held')], 5, held).evicted).toEqual([
      { collection: 'docs', key: 'a' },
    ]);
    expect(store.replica.digest('docs')).toBe(digestOf([inA(2, 'b'), inA(3, 'c')]));
    expect(store.replica.evictOutside(new Set([A]), ['docs'])).toEqual([{ collection: 'docs', key: 'b' }]);
    expect(store.replica.digest('docs')).toBe(digestOf([inA(3, 'c')]));

    // Back in scope at the version of its stub: held, and counted, again.
    store.replica.applyBucketChanges(LANE, A, [inA(5, 'never-held')], 6, store.scope.held(LANE));
    expect(store.replica.digest('docs')).toBe(digestOf([inA(3, 'c'), inA(5, 'never-held')]));
    expect(store.replica.rangeDigests('docs', 0, [0], 0)).toEqual({ digests: [[store.replica.digest('docs')]], counts: [[2]] });
    // A stub keeps no hash: a scrub of it finds nothing to check.
    const stubs = byHand(dir, (db) => db.prepare('SELECT key, hash FROM documents WHERE evicted = 1 ORDER BY key').all());
    expect(stubs).toEqual([
      { key: 'a', hash: null },
      { key: 'b', hash: null },
    ]);
    expect(store.replica.scrub(undefined, Infinity).rotten).toEqual([]);
  });

  it('follows rows deleted and inserted by hand (the triggers), and hashes at open a row put there without its hash', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    const docs = many(1, 20);
    store.replica.applyChanges(LANE, docs);
    store.close();
    const intruder = change(100, 'intruder', 'by hand');
    const unhashed = change(101, 'unhashed', 'by hand too');
    byHand(dir, (db) => {
      db.prepare("DELETE FROM documents WHERE collection = 'docs' AND key IN ('k3', 'k4')").run();
      const insert = db.prepare(
        `INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, hash) VALUES ('docs', ?, ?, 0, ?, ?, 'op', ?)`,
      );
      insert.run(intruder.k, asBuffer(intruder.v!), intruder.lsn, hlc(), hashOf(intruder));
      insert.run(unhashed.k, asBuffer(unhashed.v!), unhashed.lsn, hlc(), null);
      // What the triggers alone made of it, before the agent opens the file again.
      const stored = db.prepare<[], { digest: number }>("SELECT digest FROM collections WHERE collection = 'docs'").get()!.digest;
      expect(stored).toBe(digestOf([...docs.filter((d) => d.k !== 'k3' && d.k !== 'k4'), intruder]));
    });
    const reopened = openStore(dir);
    expect(reopened.replica.digest('docs')).toBe(digestOf([...docs.filter((d) => d.k !== 'k3' && d.k !== 'k4'), intruder, unhashed]));
    expect(reopened.replica.scrub(undefined, Infinity).rotten).toEqual([]);
  });

  it('follows rows moved to another collection, evicted, or given another hash by hand', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    const docs = many(1, 10);
    store.replica.applyChanges(LANE, docs);
    const rest = (...gone: string[]): Change[] => docs.filter((d) => !gone.includes(d.k));
    const edit = (sql: string): void => void byHand(dir, (db) => db.prepare(sql).run());

    edit("UPDATE documents SET collection = 'moved' WHERE key = 'k1'");
    expect(store.replica.digest('docs')).toBe(digestOf(rest('k1')));
    expect(store.replica.digest('moved')).toBe(digestOf([docs[1]!]));
    edit("UPDATE documents SET evicted = 1 WHERE key = 'k2'");
    expect(store.replica.digest('docs')).toBe(digestOf(rest('k1', 'k2')));
    edit("UPDATE documents SET evicted = 0 WHERE key = 'k2'");
    expect(store.replica.digest('docs')).toBe(digestOf(rest('k1')));
    edit("UPDATE documents SET hash = NULL WHERE key = 'k3'");
    expect(store.replica.digest('docs')).toBe(digestOf(rest('k1', 'k3')));
    edit(`UPDATE documents SET hash = ${hashOf(docs[3]!)} WHERE key = 'k3'`);
    expect(store.replica.digest('docs')).toBe(digestOf(rest('k1')));
    // Whatever a hash holds, the sum stays an integer below 2^52.
    edit(`UPDATE documents SET hash = -9223372036854775808 WHERE key = 'k4'`);
    edit(`UPDATE documents SET hash = 9223372036854775807 WHERE key = 'k5'`);
    edit(
      `INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, hash) VALUES ('junk', 'x', NULL, 1, 1, '0', 'op', -1)`,
    );
    for (const collection of ['docs', 'junk']) {
      const digest = store.replica.digest(collection);
      expect(Number.isInteger(digest) && digest >= 0 && digest < DIGEST_MODULUS).toBe(true);
      expect(store.replica.recountDigest(collection)).toBe(digest);
    }
  });

  it('sums the documents into ranges as the hub’s tally does, each range’s children adding up to it', () => {
    const store = openStore();
    const changes = [...many(1, 200), change(300, 'k5'), change(301, 'k6'), change(302, 'x', 1, 'other')];
    store.replica.applyChanges(LANE, changes);
    store.scope.reconcile(LANE, [A], []);
    store.replica.applyBucketChanges(LANE, A, [{ ...change(303, 'stub'), op: 'out' }], 303, store.scope.held(LANE));
    const held = newest(changes);
    const digest = store.replica.digest('docs');
    expect(digest).toBe(digestOf(held));

    const top = store.replica.rangeDigests('docs', 0, [0], 4);
    expect(top).toEqual(tallyOf(held, 0, [0], 4));
    expect(top.counts[0]!.reduce((a, b) => a + b)).toBe(held.length); // tombstones in, the stub out
    expect(top.digests[0]!.reduce((a, b) => (a + b) % DIGEST_MODULUS)).toBe(digest);

    // One level down, in three of the sixteen that hold documents: each parent's children add up to it.
    const parents = top.counts[0]!.flatMap((n, range) => (n > 0 ? [range] : [])).slice(-3);
    expect(parents).toHaveLength(3);
    const deeper = store.replica.rangeDigests('docs', 4, parents, 3);
    expect(deeper).toEqual(tallyOf(held, 4, parents, 3));
    parents.forEach((p, i) => expect(deeper.digests[i]!.reduce((a, b) => (a + b) % DIGEST_MODULUS)).toBe(top.digests[0]![p]));
  });

  it('recounts a digest that rotted itself from the rows’ stored hashes', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    const docs = [...many(1, 30), change(31, 'k2')];
    store.replica.applyChanges(LANE, docs);
    const truth = digestOf(newest(docs));
    byHand(dir, (db) => db.prepare("UPDATE collections SET digest = 42 WHERE collection = 'docs'").run());
    expect(store.replica.digest('docs')).toBe(42);
    expect(store.replica.recountDigest('docs')).toBe(truth);
    expect(store.replica.digest('docs')).toBe(truth);

    byHand(dir, (db) => db.prepare('DELETE FROM collections').run());
    expect(store.replica.digest('docs')).toBe(0);
    expect(store.replica.recountDigest('docs')).toBe(truth);
    store.replica.applyChanges(LANE, [change(40, 'k0')]);
    expect(store.replica.digest('docs')).toBe(digestOf(newest([...docs, change(40, 'k0')])));
    expect(store.replica.recountDigest('empty')).toBe(0);
  });

  it('hashes what it applies over the stored value bytes, as documentHash does', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    store.replica.applyChanges(LANE, [change(1, 'p', { b: 1, a: [1.5, 'x'] }), change(2, 'd')]);
    const rows = byHand(dir, (db) =>
      db
        .prepare<[], { key: string; value: Buffer | null; deleted: number; version: number; hash: number }>(
          'SELECT key, value, deleted, version, hash FROM documents ORDER BY key',
        )
        .all(),
    );
    for (const row of rows) expect(row.hash).toBe(documentHash('docs', row.key, row.version, row.deleted === 1, row.value));
    expect(rows.map((r) => r.key)).toEqual(['d', 'p']);
  });
});
