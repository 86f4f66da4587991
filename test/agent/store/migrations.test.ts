import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../../agent/store/agent-db.js';
import { AgentStore } from '../../../agent/store/agent-store.js';
import { AGENT_MIGRATIONS } from '../../../agent/schema.js';
import { encodeCbor } from '../../../shared/codec.js';
import { DIGEST_MODULUS, documentHash } from '../../../shared/digest.js';
import { tempDir } from '../../helpers/temp.js';
import { appendAll, change, hlc, openStore, put, queued } from './fixtures.js';

const INCARNATION = 'ab'.repeat(16);

/** A database as software of schema version `version` left it (migrations 1..version applied), in a fresh directory. */
function databaseAt(version: number): { dir: string; db: Database.Database } {
  const dir = tempDir('agent-store-old');
  const db = new Database(join(dir, 'agent.db'));
  for (const migration of AGENT_MIGRATIONS.slice(0, version)) db.exec(migration);
  db.pragma(`user_version = ${version}`);
  return { dir, db };
}

/**
 * Rows such a database holds, in the columns its version has: the meta of one agent, two
 * documents (one a tombstone) and a cursor, three outbox rows (one committed and waiting for its
 * version; from version 4 on, one given up), and one rejection.
 */
function fill(db: Database.Database, version: number, clock: string): void {
  const meta = db.prepare('INSERT INTO meta (name, value) VALUES (?, ?)');
  meta.run('incarnation', INCARNATION);
  meta.run('next_seq', '4');
  meta.run('hlc', clock);
  meta.run('watermark', '9');
  meta.run('snapshot', JSON.stringify({ lsn: 12, after: ['docs', 'm'] }));
  meta.run('setting:hubEpoch', '3');
  const doc = db.prepare('INSERT INTO documents (collection, key, value, deleted, version, hlc, origin) VALUES (?, ?, ?, ?, ?, ?, ?)');
  doc.run('docs', 'a', encodeCbor({ n: 1 }), 0, 5, hlc(), 'hub');
  doc.run('docs', 'gone', null, 1, 7, hlc(), 'pi-2');
  // From version 12 on a cursor shares its row of `collections` with the digest.
  db.prepare(`INSERT INTO ${version >= 12 ? 'collections' : 'cursors'} (collection, applied_lsn) VALUES ('docs', 7)`).run();
  const columns = ['seq', 'collection', 'key', 'op', 'value', 'hlc', 'base', 'created_at', 'acked_lsn'];
  if (version >= 2) columns.push('rep');
  if (version >= 4) columns.push('skipped');
  const outbox = db.prepare(`INSERT INTO outbox (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`);
  const row = (seq: number, key: string, op: string, value: unknown, acked: number | null, rep: number | null, skipped: string | null) => [
    seq,
    'docs',
    key,
    op,
    value === undefined ? null : encodeCbor(value),
    hlc(),
    5,
    Date.now(),
    acked,
    ...(version >= 2 ? [rep] : []),
    ...(version >= 4 ? [skipped] : []),
  ];
  outbox.run(...row(1, 'a', 'put', { n: 2 }, 8, null, null)); // committed as LSN 8; the replica holds 5
  outbox.run(...row(2, 'a', 'patch', { m: 1 }, null, 2, null));
  if (version >= 4) outbox.run(...row(3, 'b', 'put', undefined, null, null, 'expired'));
  else outbox.run(...row(3, 'b', 'del', undefined, null, null, null));
  // Before version 3 a rejection had no incarnation: the migration gives it the database's.
  const rejected: Array<[string, unknown]> = [
    ['seq', 0],
    ['collection', 'docs'],
    ['key', 'r'],
    ['op', 'put'],
    ['value', encodeCbor('no')],
    ['outcome', 'rejected'],
    ['reason', 'schema'],
    ['detail', 'not a number'],
    ['at', 1_700_000_000_000],
    ...(version >= 3 ? [['incarnation', INCARNATION] as [string, unknown]] : []),
  ];
  db.prepare(`INSERT INTO rejections (${rejected.map(([c]) => c).join(', ')}) VALUES (${rejected.map(() => '?').join(', ')})`).run(
    ...rejected.map(([, v]) => v),
  );
}

describe('agent store: migrations', () => {
  it('opens a new database at the current schema version', () => {
    const dir = tempDir('agent-store');
    openStore(dir).close();
    const db = new Database(join(dir, 'agent.db'), { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(AGENT_MIGRATIONS.length);
    db.close();
  });

  for (let version = 0; version < AGENT_MIGRATIONS.length; version++) {
    it(`opens a database of schema version ${version}, keeping what it held, and works on`, () => {
      const { dir, db } = databaseAt(version);
      const clock = hlc();
      if (version > 0) fill(db, version, clock);
      db.close();
      const store = openStore(dir);

      if (version === 0) {
        // Nothing yet: a database born now.
        expect(store.partitions.incarnationOf('default')).toMatch(/^[0-9a-f]{32}$/);
        expect(store.outbox.pendingCount()).toBe(0);
        expect(appendAll(store, [put('k', 1)])).toEqual([1]);
      } else {
        expect(store.partitions.incarnationOf('default')).toBe(INCARNATION);
        expect(store.settings.lastHlc).toBe(clock);
        expect(store.partitions.watermarkOf('default')).toBe(9);
        expect(store.partitions.snapshotProgressOf('default')).toEqual({ lsn: 12, after: ['docs', 'm'] });
        expect(store.settings.get('hubEpoch')).toBe(3);
        expect(store.replica.cursor('docs')).toBe(7);
        // The committed write and the pending patch still lie over the replica's version 5.
        expect(store.replica.read('docs', 'a')).toEqual({ collection: 'docs', key: 'a', value: { n: 2, m: 1 }, version: 5, pending: true });
        expect(store.replica.read('docs', 'a', true)?.value).toEqual({ n: 1 });
        expect(store.replica.read('docs', 'gone')).toBeUndefined();
        expect(store.replica.versionOf('docs', 'gone')).toBe(7);
        // Hashed at open, whatever the version: the digest is the two documents', the tombstone's too.
        expect(store.replica.digest('docs')).toBe(
          (documentHash('docs', 'a', 5, false, encodeCbor({ n: 1 })) + documentHash('docs', 'gone', 7, true, null)) % DIGEST_MODULUS,
        );
        // The outbox is the default partition's, seqs kept; the committed write is not sent again.
        expect(queued(store)).toEqual([
          [2, 'a', 'patch'],
          [3, 'b', version >= 4 ? 'skip' : 'del'],
        ]);
        if (version >= 2) expect(store.outbox.pendingFrom('default', 2, 1, 1 << 20)[0]).toMatchObject({ rep: 2, base: 5 });
        expect(store.rejections.list()).toEqual([
          {
            seq: 0,
            collection: 'docs',
            key: 'r',
            op: 'put',
            value: 'no',
            outcome: 'rejected',
            reason: 'schema',
            detail: 'not a number',
            at: 1_700_000_000_000,
          },
        ]);
        // It works on: the sequence continues, acks settle, the hub's changes release the overlay.
        expect(appendAll(store, [put('c', 3)])).toEqual([4]);
        const rejected = store.outbox.applyResults(
          'default',
          [
            { seq: 2, outcome: 'committed', lsn: 10 },
            { seq: 3, outcome: 'rejected', reason: 'schema' },
            { seq: 4, outcome: 'conflict', reason: 'lww' },
          ],
          () => true,
        );
        // A write given up before upload (version 4 on) was reported then, not again.
        expect(rejected.map((r) => r.seq)).toEqual(version >= 4 ? [4] : [3, 4]);
        store.replica.applyChanges('default', [change(8, 'a', { n: 2 }), change(10, 'a', { n: 2, m: 1 })], 10);
        expect(store.replica.read('docs', 'a')).toEqual({
          collection: 'docs',
          key: 'a',
          value: { n: 2, m: 1 },
          version: 10,
          pending: false,
        });
        expect(store.outbox.pendingCount()).toBe(0);
        expect(store.partitions.watermarkOf('default')).toBe(10);
      }
      // Whatever it was, it now takes writes of other partitions too, and survives a restart.
      const seqs = appendAll(store, [put('o', 1, { partition: 'orders', collection: 'orders' })]);
      expect(seqs).toEqual([1]);
      const incarnation = store.partitions.incarnationOf('default');
      store.close();
      const reopened = openStore(dir);
      expect(reopened.partitions.incarnationOf('default')).toBe(incarnation);
      expect(queued(reopened, 'orders')).toEqual([[1, 'o', 'put']]);
    });
  }

  it('keeps the incarnation a rejection belonged to through the migration to per-incarnation rejections', () => {
    const { dir, db } = databaseAt(2);
    fill(db, 2, hlc());
    db.close();
    openStore(dir).close();
    const raw = new Database(join(dir, 'agent.db'), { readonly: true });
    expect(raw.prepare('SELECT incarnation, seq FROM rejections').all()).toEqual([{ incarnation: INCARNATION, seq: 0 }]);
    raw.close();
  });

  describe('content digests (schema 9)', () => {
    const DIGESTS = 9;
    /** Documents as software before digests stored them: 2,500 in docs (every 7th a tombstone, 40 evicted stubs) and 300 in other. */
    const rows = [
      ...Array.from({ length: 2500 }, (_, i) => ({ c: 'docs', k: `d${i}`, version: i + 1, deleted: i % 7 === 0, evicted: i % 61 === 0 })),
      ...Array.from({ length: 300 }, (_, i) => ({ c: 'other', k: `o${i}`, version: 3000 + i, deleted: false, evicted: false })),
    ].map((r) => ({ ...r, value: r.deleted || r.evicted ? null : encodeCbor({ key: r.k, n: r.version }) }));
    const hashOf = (r: (typeof rows)[number]): number => documentHash(r.c, r.k, r.version, r.deleted || r.evicted, r.value);
    const digestOf = (c: string): number =>
      Number(rows.filter((r) => r.c === c && !r.evicted).reduce((sum, r) => sum + BigInt(hashOf(r)), 0n) % 2n ** 52n);

    function before(): { dir: string; db: Database.Database } {
      const { dir, db } = databaseAt(DIGESTS - 1);
      const insert = db.prepare(
        'INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, evicted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      );
      db.transaction(() => {
        for (const r of rows) insert.run(r.c, r.k, r.value, r.deleted || r.evicted ? 1 : 0, r.version, hlc(), 'hub', r.evicted ? 1 : 0);
      })();
      return { dir, db };
    }

    function expectHashed(dir: string): void {
      const store = openStore(dir);
      expect(store.replica.digest('docs')).toBe(digestOf('docs'));
      expect(store.replica.digest('other')).toBe(digestOf('other'));
      expect(store.replica.scrub(undefined, Infinity).rotten).toEqual([]);
      store.close();
      const raw = new Database(join(dir, 'agent.db'), { readonly: true });
      const stored = raw.prepare<[], { key: string; hash: number | null }>('SELECT key, hash FROM documents').all();
      raw.close();
      expect(new Map(stored.map((r) => [r.key, r.hash]))).toEqual(new Map(rows.map((r) => [r.k, r.evicted ? null : hashOf(r)])));
    }

    it('hashes every document held at the first open, and the digests follow (evicted stubs count for nothing)', () => {
      const { dir, db } = before();
      db.close();
      expectHashed(dir);
    });

    it('goes on from where an interrupted first open left off', () => {
      const { dir, db } = before();
      // The migration ran and the first 1,000 documents of docs were hashed, then the device lost power.
      db.exec(AGENT_MIGRATIONS[DIGESTS - 1]!);
      db.pragma(`user_version = ${DIGESTS}`);
      const setHash = db.prepare('UPDATE documents SET hash = ? WHERE collection = ? AND key = ?');
      db.transaction(() => {
        for (const r of rows.slice(0, 1000)) if (!r.evicted) setHash.run(hashOf(r), r.c, r.k);
      })();
      db.close();
      expectHashed(dir);
    });
  });

  it('refuses a database newer than this software, and leaves it as it was', () => {
    const newer = AGENT_MIGRATIONS.length + 1;
    const { dir, db } = databaseAt(AGENT_MIGRATIONS.length);
    db.pragma(`user_version = ${newer}`);
    db.close();
    let refused: unknown;
    try {
      new AgentStore(dir).close();
    } catch (error) {
      refused = error;
    }
    // Not a storage failure: the database is fine, the software is too old for it.
    expect(refused).toMatchObject({ code: 'OUTPOST_DATABASE_TOO_NEW', version: newer, supported: AGENT_MIGRATIONS.length });
    expect((refused as Error).message).toContain('upgrade Outpost');
    const raw = new Database(join(dir, 'agent.db'), { readonly: true });
    expect(raw.pragma('user_version', { simple: true })).toBe(newer);
    raw.close();
  });
});

describe('page size', () => {
  it('a new database takes 1 KB pages (less to write per commit); one made before keeps its own', () => {
    const fresh = tempDir('agent-store-new');
    new AgentStore(fresh).close();
    const made = new Database(join(fresh, 'agent.db'));
    expect(made.pragma('page_size', { simple: true })).toBe(PAGE_SIZE);
    expect(PAGE_SIZE).toBe(1024);
    made.close();

    const { dir, db } = databaseAt(AGENT_MIGRATIONS.length);
    const before = db.pragma('page_size', { simple: true });
    db.close();
    new AgentStore(dir).close();
    const reopened = new Database(join(dir, 'agent.db'));
    expect(reopened.pragma('page_size', { simple: true })).toBe(before);
    expect(before).not.toBe(PAGE_SIZE);
    reopened.close();
  });
});
