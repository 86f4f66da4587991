import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHubConfig } from '../../hub/config.js';
import { Hub, type HubOptions } from '../../hub/hub.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { contentHash } from '../../shared/blobs.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { ageTree, tempDir } from '../helpers/temp.js';

const DAY = 24 * 3600_000;

/**
 * The blob collector reads what documents name, then removes the rest: a document committed in
 * between naming old content must keep it (its commit touches the content; the collector removes
 * only content untouched for its grace, deciding under the content's turn).
 */
describe('a blob document committed while the collector runs', () => {
  let hub: Hub | undefined;
  afterEach(async () => {
    await hub?.stop();
    hub = undefined;
  });

  async function keepsNamedContent(more: Partial<HubOptions>, age: (hash: string) => Promise<void>): Promise<void> {
    const dir = tempDir('blob-race');
    hub = await Hub.start({
      port: 0,
      host: '127.0.0.1',
      dataDir: join(dir, 'hub'),
      http: { host: '127.0.0.1', port: 0 },
      adminToken: 'adm1n',
      config: parseHubConfig({ access: { default: { read: ['*'], write: ['*'] } }, collections: { firmware: { blobs: 'eager' } } }),
      ...more,
    });
    const base = hub.httpAddress!;
    const auth = { authorization: 'Bearer adm1n' };
    const bytes = randomBytes(3000);
    const hash = contentHash(bytes);
    const put = await fetch(`${base}/v1/blobs/firmware/v1`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/x-fw' },
      body: bytes,
    });
    expect(put.status).toBe(200);
    expect((await fetch(`${base}/v1/docs/firmware/v1`, { method: 'DELETE', headers: auth })).status).toBe(200);
    await age(hash); // named by nothing, untouched for two days: the collector's to remove

    // Once the collector has read what is named, and before it removes, v2 is committed naming the content.
    const content = hub.core.store.content;
    const collect = content.collect.bind(content);
    let committed = false;
    content.collect = async (named, untouchedSince) => {
      const again = await fetch(`${base}/v1/docs/firmware/v2`, {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ sha256: hash, size: bytes.length, contentType: 'application/x-fw' }),
      });
      committed = again.status === 200;
      return collect(named, untouchedSince);
    };
    const removed = await hub.core.collectBlobs();
    expect(committed).toBe(true);
    expect(removed).not.toContain(hash);
    const read = await fetch(`${base}/v1/blobs/firmware/v2`, { headers: auth });
    expect(read.status).toBe(200);
    expect(Buffer.from(await read.arrayBuffer()).equals(bytes)).toBe(true);
  }

  it('keeps the content it names (files)', async () => {
    const dir = tempDir('blob-race-files');
    await keepsNamedContent({ dataDir: join(dir, 'hub') }, async () => ageTree(join(dir, 'hub', 'content'), 2 * DAY));
  });

  it.skipIf(NO_POSTGRES !== undefined)(`keeps the content it names (PostgreSQL)${NO_POSTGRES ? ` (${NO_POSTGRES})` : ''}`, async () => {
    const url = await freshDatabase();
    await keepsNamedContent({ store: await PostgresHubStore.open(url) }, async (hash) => {
      await sql(url, `UPDATE blob_contents SET touched_at = ${Date.now() - 2 * DAY} WHERE hash = '${hash}'`);
    });
  });
});
