import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { storeStreamed } from '../../content/content-transfer.js';
import { BLOB_CHUNK_BYTES, contentHash } from '../../shared/blobs.js';
import { encodeCbor } from '../../shared/codec.js';
import type { HubVerifyReport } from '../../hub/store/digest-reads.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { freshDatabase, NO_POSTGRES } from '../helpers/postgres.js';
import { runOutpost, runOutpostAsync } from '../helpers/processes.js';
import { TestS3Server } from '../helpers/s3-server.js';
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

const s3 = NO_POSTGRES === undefined ? await TestS3Server.start() : undefined;

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

  it('names blob content whose bytes no longer match its address; --repair drops it, and an upload of it stores it whole again', async () => {
    const dir = tempDir('hub-verify');
    const store = new SqliteHubStore(dir);
    const [sound, rotten] = [randomBytes(BLOB_CHUNK_BYTES + 7), randomBytes(2 * BLOB_CHUNK_BYTES)];
    for (const bytes of [sound, rotten]) await storeStreamed(store.content, Readable.from([bytes]), 1e9);
    await store.close();
    const hash = contentHash(rotten);
    const chunk = join(dir, 'content', 'objects', hash.slice(0, 2), hash, '1');
    const bytes = readFileSync(chunk);
    bytes[7] = bytes[7]! ^ 0x10; // a bit the disk flipped
    writeFileSync(chunk, bytes);

    const found = runOutpost(['hub', 'verify', '--data', dir]);
    expect(found.status, found.stderr).toBe(1);
    expect(found.stdout).toContain('checked 2 blob contents (0.8 MB) against their addresses');
    expect(found.stdout).toContain(`damaged blob content: ${hash} (${rotten.length} bytes): --repair drops it`);
    const repaired = runOutpost(['hub', 'verify', '--data', dir, '--repair']);
    expect(repaired.stdout).toContain(`damaged blob content: ${hash} (${rotten.length} bytes): dropped`);
    expect(repaired.stdout).toMatch(/damage found, and repaired/);
    const again = runOutpost(['hub', 'verify', '--data', dir]);
    expect([again.status, again.stdout.trim().split('\n').at(-1)]).toEqual([0, 'all well']);
    expect(again.stdout).toContain('checked 1 blob contents');

    const reopened = new SqliteHubStore(dir);
    expect(await reopened.content.info(hash)).toBeUndefined();
    await storeStreamed(reopened.content, Readable.from([rotten]), 1e9);
    expect(Buffer.concat([await reopened.content.readChunk(hash, 0), await reopened.content.readChunk(hash, 1)]).equals(rotten)).toBe(true);
    await reopened.close();
  });

  it.skipIf(NO_POSTGRES !== undefined)(
    `reads a PostgreSQL hub's blob content in its bucket, and names content that lost an object${NO_POSTGRES ? ` (${NO_POSTGRES})` : ''}`,
    async () => {
      const url = await freshDatabase();
      const bucket = await s3!.bucket();
      const store = await PostgresHubStore.open(url, { objectStore: bucket });
      const clip = randomBytes(BLOB_CHUNK_BYTES + 1);
      await storeStreamed(store.content, Readable.from([clip]), 1e9);
      await store.close();
      const args = ['hub', 'verify', '--store', url, '--blob-store', bucket.url, '--blob-store-endpoint', bucket.endpoint!];
      const sound = await runOutpostAsync(args, s3!.env);
      expect([sound.status, sound.stdout.trim().split('\n').at(-1)], sound.stderr).toEqual([0, 'all well']);
      expect(sound.stdout).toContain('checked 1 blob contents');
      await s3!.remove(bucket, (await s3!.keys(bucket))[0]!);
      const found = await runOutpostAsync(args, s3!.env);
      expect(found.status, found.stderr).toBe(1);
      expect(found.stdout).toContain(`damaged blob content: ${contentHash(clip)}`);
    },
  );

  it('exits 2 on a usage error', () => {
    const dir = tempDir('hub-verify');
    const notPostgres = runOutpost(['hub', 'verify', '--postgres', 'mysql://db/hub', '--data', dir]);
    expect(notPostgres.status).toBe(2);
    expect(notPostgres.stderr).toMatch(/not a PostgreSQL URL.*OUTPOST_INVALID_CONFIG/);
    expect(runOutpost(['hub', 'verify', '--no-such-option']).status).toBe(2);
    const bucketOnSqlite = runOutpost(['hub', 'verify', '--data', dir, '--blob-store', 's3://fleet-content/hub']);
    expect(bucketOnSqlite.status).toBe(2);
    expect(bucketOnSqlite.stderr).toMatch(/needs a PostgreSQL store.*OUTPOST_INVALID_CONFIG/);
  });
});
