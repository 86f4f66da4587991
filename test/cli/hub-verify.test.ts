import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeCbor } from '../../shared/codec.js';
import type { HubVerifyReport } from '../../hub/store/digest-reads.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { runOutpost } from '../helpers/processes.js';
import { commitGroup, hubPut, scoped } from '../helpers/store-writes.js';
import { tempDir } from '../helpers/temp.js';

/** A stopped hub's SQLite database whose document docs/a was changed underneath it. */
async function damagedHub(): Promise<string> {
  const dir = tempDir('hub-verify');
  const store = new SqliteHubStore(dir);
  await commitGroup(store, [hubPut('docs', 'a', { n: 1 }), hubPut('docs', 'b', 2), hubPut('other', 'c', 3)]);
  await store.close();
  const db = new Database(join(dir, 'hub.db'));
  db.prepare("UPDATE documents SET value = ? WHERE collection = 'docs' AND key = 'a'").run(encodeCbor({ n: 666 }));
  db.close();
  return dir;
}

describe('outpost hub verify', () => {
  it('names a damaged document and exits 1; --repair restores it from the log, and then all is well', async () => {
    const dir = await damagedHub();
    const found = runOutpost(['hub', 'verify', '--data', dir]);
    expect(found.status, found.stderr).toBe(1);
    expect(found.stdout).toContain('checked 3 documents in 2 collections');
    expect(found.stdout).toMatch(/damaged: docs\/a \(version 1\): .*--repair restores it/);
    expect(found.stdout).toContain('sqlite integrity_check: ok');

    const json = runOutpost(['hub', 'verify', '--data', dir, '--json']);
    expect(json.status).toBe(1);
    const report = JSON.parse(json.stdout) as HubVerifyReport;
    expect(report).toMatchObject({ ok: false, damaged: [{ collection: 'docs', key: 'a', version: 1, restorable: true, restored: false }] });

    // Not while another process has the database open (a running hub).
    const running = new SqliteHubStore(dir);
    const refused = runOutpost(['hub', 'verify', '--data', dir, '--repair']);
    await running.close();
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/stop the hub, then repair.*OUTPOST_HUB_RUNNING/);

    const repaired = runOutpost(['hub', 'verify', '--data', dir, '--repair']);
    expect(repaired.status, repaired.stderr).toBe(1); // damage was found, repaired or not
    expect(repaired.stdout).toMatch(/docs\/a \(version 1\): restored from the log/);
    expect(repaired.stdout).toMatch(/damage found, and repaired/);

    const again = runOutpost(['hub', 'verify', '--data', dir]);
    expect([again.status, again.stdout.trim().split('\n').at(-1)]).toEqual([0, 'all well']);
    const store = new SqliteHubStore(dir);
    expect((await store.document('docs', 'a'))?.value).toEqual({ n: 1 });
    await store.close();
  });

  it("finds a scope bucket's wrong digest; --repair rewrites it from its documents' hashes", async () => {
    const dir = tempDir('hub-verify');
    const bucket = 'bucket-A-0000000';
    const store = new SqliteHubStore(dir);
    await commitGroup(store, [scoped(hubPut('sites', 'a', { n: 1 }), [bucket]), scoped(hubPut('sites', 'b', 2), [bucket])]);
    const sound = (await store.bucketDigests([bucket])).get(bucket)!.digest;
    await store.close();
    const db = new Database(join(dir, 'hub.db'));
    db.prepare('UPDATE bucket_heads SET digest = 77 WHERE bucket = ?').run(bucket);
    db.close();

    const found = runOutpost(['hub', 'verify', '--data', dir]);
    expect(found.status, found.stderr).toBe(1);
    expect(found.stdout).toContain('checked 2 documents in 1 collections and 1 scope buckets');
    expect(found.stdout).toContain(`digest of scope bucket ${bucket}: stored 77, its documents sum to ${sound}\n`);
    const json = JSON.parse(runOutpost(['hub', 'verify', '--data', dir, '--json']).stdout) as HubVerifyReport;
    expect(json).toMatchObject({
      ok: false,
      buckets: 1,
      digests: [],
      bucketDigests: [{ bucket, stored: 77, computed: sound, rewritten: false }],
    });

    const repaired = runOutpost(['hub', 'verify', '--data', dir, '--repair']);
    expect(repaired.stdout).toContain(`digest of scope bucket ${bucket}: stored 77, its documents sum to ${sound}: rewritten`);
    expect(repaired.stdout).toMatch(/damage found, and repaired/);
    const again = runOutpost(['hub', 'verify', '--data', dir]);
    expect([again.status, again.stdout.trim().split('\n').at(-1)]).toEqual([0, 'all well']);
  });

  it('exits 2 on a usage error', () => {
    const dir = tempDir('hub-verify');
    const notPostgres = runOutpost(['hub', 'verify', '--postgres', 'mysql://db/hub', '--data', dir]);
    expect(notPostgres.status).toBe(2);
    expect(notPostgres.stderr).toMatch(/not a PostgreSQL URL.*OUTPOST_INVALID_CONFIG/);
    expect(runOutpost(['hub', 'verify', '--no-such-option']).status).toBe(2);
  });
});
