import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { answerPull } from '../../hub/pull.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { HybridClock } from '../../shared/hlc.js';
import { commitGroup, hubPut } from '../helpers/store-writes.js';
import { tempDir } from '../helpers/temp.js';

const ALL = Number.MAX_SAFE_INTEGER;

/**
 * A log that lost its oldest entries without `pruned_through` saying so (an interrupted prune of
 * an older version, a file edited or restored by hand): the state that once left an agent with
 * 151 of 301 documents, believing itself caught up. Pulls must not page across the hole.
 */
describe('a log with a hole below its recorded bound', () => {
  const stores: SqliteHubStore[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });

  async function damagedHub(): Promise<SqliteHubStore> {
    const dir = tempDir('log-hole');
    const store = new SqliteHubStore(dir);
    for (let n = 0; n < 3; n++)
      await commitGroup(
        store,
        Array.from({ length: 100 }, (_, i) => hubPut('notes', `n${n * 100 + i}`, i)),
      );
    await store.close();
    const raw = new Database(join(dir, 'hub.db'));
    raw.prepare('DELETE FROM log WHERE lsn <= 151').run(); // pruned_through left at 0
    raw.close();
    const reopened = new SqliteHubStore(dir);
    stores.push(reopened);
    expect([reopened.head, reopened.prunedThrough]).toEqual([300, 0]);
    return reopened;
  }

  it('answers a pull from before the hole with a snapshot of every document, not a page', async () => {
    const store = await damagedHub();
    const clock = new HybridClock();
    const answer = await answerPull(store, clock, { id: 1, from: 0, limit: 1000 }, ALL);
    expect(answer[0]).toBe('snapshot');
    const snapshot = answer[1] as { lsn: number; docs: unknown[]; next?: unknown };
    expect(snapshot.lsn).toBe(300);
    expect(snapshot.docs).toHaveLength(300);
    expect(snapshot.next).toBeUndefined();
    // Just before the hole's far edge too: entry 100 is gone.
    expect((await answerPull(store, clock, { id: 2, from: 99, limit: 1000 }, ALL))[0]).toBe('snapshot');
  });

  it('pages as before from where the log is whole, and from the head', async () => {
    const store = await damagedHub();
    const clock = new HybridClock();
    const page = await answerPull(store, clock, { id: 1, from: 151, limit: 1000 }, ALL);
    expect(page[0]).toBe('page');
    expect((page[1] as { changes: Array<{ lsn: number }> }).changes.map((c) => c.lsn)).toEqual(
      Array.from({ length: 149 }, (_, i) => 152 + i),
    );
    expect(await answerPull(store, clock, { id: 2, from: 300, limit: 1000 }, ALL)).toMatchObject([
      'page',
      { from: 300, to: 300, more: false, changes: [] },
    ]);
  });
});
