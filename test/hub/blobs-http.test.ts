import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { DEFAULT_BLOB_COLLECTION } from '../../hub/blob-collector.js';
import { Hub, type HubOptions } from '../../hub/hub.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { BLOB_CHUNK_BYTES, contentHash } from '../../shared/blobs.js';
import { encodeHlc } from '../../shared/hlc.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

describe("the hub's blob API (cloud-side uploads: firmware, models)", () => {
  let hub: Hub | undefined;
  const agents: Agent[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await hub?.stop();
    hub = undefined;
  });

  /** A hub with its data in `dir/hub`, its HTTP API behind an admin token; `more` adds to or overrides its options. */
  async function start(dir: string, more: Partial<HubOptions> = {}): Promise<{ base: string; auth: Record<string, string> }> {
    hub = await Hub.start({
      port: 0,
      host: '127.0.0.1',
      dev: true,
      dataDir: join(dir, 'hub'),
      http: { host: '127.0.0.1', port: 0 },
      adminToken: 'adm1n',
      config: parseHubConfig({ access: { default: { read: ['*'], write: ['*'] } } }),
      ...more,
    });
    return { base: hub.httpAddress!, auth: { authorization: 'Bearer adm1n' } };
  }

  it('stores streamed content once, commits its document only once it is whole, and gives back the same bytes', async () => {
    const dir = tempDir('blobs-http');
    const { base, auth } = await start(dir);
    const agent = new Agent({ hubUrl: `mqtt://127.0.0.1:${hub!.port}`, agentId: 'pi-1', dataDir: join(dir, 'pi-1') }).start();
    agents.push(agent);
    const firmware = randomBytes(3 * BLOB_CHUNK_BYTES + 12_345);
    const sha256 = contentHash(firmware);

    const put = await fetch(`${base}/v1/blobs/firmware/v1.2`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      body: firmware,
    });
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({
      outcome: 'committed',
      blob: { sha256, size: firmware.length, contentType: 'application/octet-stream' },
    });

    // The document replicates like any other; the content never travels in the log or a change set.
    await waitFor('the blob document at the agent', async () => (await agent.get('firmware', 'v1.2')) !== undefined);
    expect((await agent.get('firmware', 'v1.2'))?.value).toEqual({
      sha256,
      size: firmware.length,
      contentType: 'application/octet-stream',
    });

    const got = await fetch(`${base}/v1/blobs/firmware/v1.2`, { headers: auth });
    expect(got.status).toBe(200);
    expect(got.headers.get('etag')).toBe(`"${sha256}"`);
    expect(got.headers.get('content-length')).toBe(String(firmware.length));
    expect(Buffer.from(await got.arrayBuffer()).equals(firmware)).toBe(true);

    // The same content under a second name is stored once.
    const again = await fetch(`${base}/v1/blobs/firmware/latest`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/x-fw' },
      body: firmware,
    });
    expect(await again.json()).toMatchObject({ outcome: 'committed', blob: { sha256, contentType: 'application/x-fw' } });
    const objects = join(dir, 'hub', 'content', 'objects');
    expect(readdirSync(objects).flatMap((shard) => readdirSync(join(objects, shard)))).toEqual([sha256]);
    expect(readdirSync(join(objects, sha256.slice(0, 2), sha256)).sort()).toEqual(['0', '1', '2', '3', 'size']);
    expect(readdirSync(join(dir, 'hub', 'content', 'spool')), 'content spooled on the data disk, and cleared').toEqual([]);
  });

  it.skipIf(NO_POSTGRES !== undefined)(
    `keeps content in the database of a PostgreSQL hub${NO_POSTGRES ? ` (${NO_POSTGRES})` : ''}`,
    async () => {
      const url = await freshDatabase();
      const { base, auth } = await start(tempDir('blobs-pg'), { store: await PostgresHubStore.open(url) });
      const model = randomBytes(BLOB_CHUNK_BYTES + 99);
      const put = await fetch(`${base}/v1/blobs/models/m1`, {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/x-model' },
        body: model,
      });
      expect(await put.json()).toMatchObject({ outcome: 'committed', blob: { sha256: contentHash(model), size: model.length } });
      const got = await fetch(`${base}/v1/blobs/models/m1`, { headers: auth });
      expect(Buffer.from(await got.arrayBuffer()).equals(model)).toBe(true);
      expect(await sql<{ n: number }>(url, 'SELECT count(*)::int AS n FROM blob_chunks')).toEqual([{ n: 2 }]);
    },
  );

  it('commits no document for an upload cut off before its end, and keeps none of it', async () => {
    const dir = tempDir('blobs-http');
    const { base, auth } = await start(dir);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 2 * BLOB_CHUNK_BYTES) return controller.error(new Error('the link dropped'));
        sent += 64 * 1024;
        controller.enqueue(randomBytes(64 * 1024));
      },
    });
    await expect(
      fetch(`${base}/v1/blobs/firmware/cut`, {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/octet-stream' },
        body,
        duplex: 'half',
      } as RequestInit),
    ).rejects.toThrow();
    // The hub began spooling the body and, once it saw the cut, dropped it.
    const spool = join(dir, 'hub', 'content', 'spool');
    await waitFor('the hub to give up the cut upload', () => existsSync(spool) && readdirSync(spool).length === 0);
    expect((await fetch(`${base}/v1/blobs/firmware/cut`, { headers: auth })).status).toBe(404);
    expect(await hub!.core.store.document('firmware', 'cut')).toBeUndefined();
    const uploads = join(dir, 'hub', 'content', 'uploads');
    expect(existsSync(uploads) ? readdirSync(uploads) : [], 'nothing of it was stored').toEqual([]);
  });

  /**
   * A collection declared to hold blobs: a document commits only once the hub holds its content
   * whole, from the hub's API and from a device alike; a plain value or a patch is refused.
   */
  async function holdsBlobsOnly(base: string, auth: Record<string, string>, dir: string): Promise<void> {
    const bytes = randomBytes(BLOB_CHUNK_BYTES + 7);
    const descriptor = { sha256: contentHash(bytes), size: bytes.length, contentType: 'application/x-fw' };
    const putDoc = (key: string, value: unknown, method = 'PUT') =>
      fetch(`${base}/v1/docs/firmware/${key}`, {
        method,
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify(value),
      });

    const early = await putDoc('early', descriptor);
    expect(early.status).toBe(422);
    expect(await early.json()).toMatchObject({ code: 'OUTPOST_WRITE_REJECTED', reason: 'blob_incomplete' });
    const device = new Agent({ hubUrl: `mqtt://127.0.0.1:${hub!.port}`, agentId: 'pi-1', dataDir: join(dir, 'pi-1') }).start();
    agents.push(device);
    await expect(device.put('firmware', 'from-device', descriptor, { durability: 'hub' })).rejects.toMatchObject({
      code: 'OUTPOST_WRITE_REJECTED',
      reason: 'blob_incomplete',
    });

    const upload = await fetch(`${base}/v1/blobs/firmware/v1`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/x-fw' },
      body: new Uint8Array(bytes),
    });
    expect(upload.status).toBe(200);
    // Held whole now: the same descriptor commits under another name, from either side.
    expect((await putDoc('copy', descriptor)).status).toBe(200);
    expect((await device.put('firmware', 'from-device', descriptor, { durability: 'hub' })).lsn).toBeGreaterThan(0);
    // A wrong size is other content.
    expect(await (await putDoc('wrong-size', { ...descriptor, size: bytes.length + 1 })).json()).toMatchObject({
      reason: 'blob_incomplete',
    });
    expect(await (await putDoc('plain', { n: 1 })).json()).toMatchObject({ reason: 'invalid_value' });
    expect(await (await putDoc('copy', { contentType: 'text/plain' }, 'PATCH')).json()).toMatchObject({ reason: 'invalid_value' });
    expect((await fetch(`${base}/v1/docs/firmware/copy`, { method: 'DELETE', headers: auth })).status).toBe(200);
  }

  const HOLDS_BLOBS = parseHubConfig({ access: { default: { read: ['*'], write: ['*'] } }, collections: { firmware: { blobs: 'eager' } } });

  it('commits a document of a collection that holds blobs only once the hub holds its content whole', async () => {
    const dir = tempDir('blobs-http');
    const { base, auth } = await start(dir, { config: HOLDS_BLOBS });
    await holdsBlobsOnly(base, auth, dir);
  });

  it.skipIf(NO_POSTGRES !== undefined)(
    `commits a blob document only once a PostgreSQL hub holds its content whole${NO_POSTGRES ? ` (${NO_POSTGRES})` : ''}`,
    async () => {
      const dir = tempDir('blobs-pg');
      const { base, auth } = await start(dir, { config: HOLDS_BLOBS, store: await PostgresHubStore.open(await freshDatabase()) });
      await holdsBlobsOnly(base, auth, dir);
    },
  );

  it('collects content no document names any more, once its grace has passed', async () => {
    const { base, auth } = await start(tempDir('blobs-http'));
    const upload = async (key: string, bytes: Buffer): Promise<string> => {
      const put = await fetch(`${base}/v1/blobs/models/${key}`, {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/x-model' },
        body: new Uint8Array(bytes),
      });
      expect(put.status).toBe(200);
      return contentHash(bytes);
    };
    const [v1, v2, shared] = [randomBytes(1000), randomBytes(2000), randomBytes(3000)];
    const old = await upload('current', v1);
    const current = await upload('current', v2); // overwritten: v1 is named by nothing now
    const kept = await upload('a', shared);
    await upload('b', shared);
    await fetch(`${base}/v1/docs/models/b`, { method: 'DELETE', headers: auth }); // still named by a
    const gone = await upload('deleted', randomBytes(10));
    await fetch(`${base}/v1/docs/models/deleted`, { method: 'DELETE', headers: auth });

    expect(await hub!.core.collectBlobs(), 'within its grace, nothing goes').toEqual([]);
    const removed = await hub!.core.collectBlobs(Date.now() + DEFAULT_BLOB_COLLECTION.graceMs + 1_000);
    expect(removed.sort()).toEqual([old, gone].sort());
    for (const hash of [current, kept]) expect(await hub!.core.store.content.info(hash)).toMatchObject({ complete: true });
    const stillThere = await fetch(`${base}/v1/blobs/models/a`, { headers: auth });
    expect(Buffer.from(await stillThere.arrayBuffer()).equals(shared)).toBe(true);
  });

  it('keeps content a write names while the collector reads the documents (a copy made, then the original deleted)', async () => {
    const { base, auth } = await start(tempDir('blobs-http'));
    const bytes = randomBytes(5000);
    const put = await fetch(`${base}/v1/blobs/zz/original`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    });
    expect(put.status).toBe(200);
    const hash = contentHash(bytes);
    await fetch(`${base}/v1/docs/aa/other`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: '{"n":1}' });
    // The collector reads collection aa, then zz. Between the two, an app copies the descriptor
    // into aa (already read) and deletes the original in zz (not yet read).
    const store = hub!.core.store;
    const listDocuments = store.listDocuments.bind(store);
    let moved = false;
    store.listDocuments = async (collection, options) => {
      if (collection === 'zz' && !moved) {
        moved = true;
        const descriptor = { sha256: hash, size: bytes.length, contentType: 'application/octet-stream' };
        const copy = await fetch(`${base}/v1/docs/aa/copy`, {
          method: 'PUT',
          headers: { ...auth, 'content-type': 'application/json' },
          body: JSON.stringify(descriptor),
        });
        expect(copy.status).toBe(200);
        expect((await fetch(`${base}/v1/docs/zz/original`, { method: 'DELETE', headers: auth })).status).toBe(200);
      }
      return listDocuments(collection, options);
    };
    const removed = await hub!.core.collectBlobs(Date.now() + DEFAULT_BLOB_COLLECTION.graceMs + 1_000);
    expect(moved).toBe(true);
    expect(removed).not.toContain(hash);
    const read = await fetch(`${base}/v1/blobs/aa/copy`, { headers: auth });
    expect(Buffer.from(await read.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('keeps content a lost version waiting to be reapplied names', async () => {
    const { base, auth } = await start(tempDir('blobs-http'));
    const bytes = randomBytes(3000);
    await fetch(`${base}/v1/blobs/models/m`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/x-model' },
      body: new Uint8Array(bytes),
    });
    await fetch(`${base}/v1/docs/models/m`, { method: 'DELETE', headers: auth }); // named by no live document now
    const hash = contentHash(bytes);
    const descriptor = { sha256: hash, size: bytes.length, contentType: 'application/x-model' };
    // A device reported the version a restore lost; `outpost hub restore reapply` may commit it again.
    await hub!.core.store.recordLost({
      agentId: 'pi-1',
      lineage: 'a'.repeat(32),
      fork: 0,
      docs: [{ collection: 'models', key: 'm', version: 1, op: 'put', value: descriptor, hlc: encodeHlc(Date.now(), 0), origin: 'pi-1' }],
    });
    const later = Date.now() + DEFAULT_BLOB_COLLECTION.graceMs + 1_000;
    expect(await hub!.core.collectBlobs(later)).not.toContain(hash);
    expect(await hub!.core.store.content.info(hash)).toMatchObject({ complete: true });
  });

  it('refuses content over its limit with a clear error, and keeps none of it', async () => {
    const dir = tempDir('blobs-http');
    const { base, auth } = await start(dir, { maxBlobBytes: 1000 });
    const big = await fetch(`${base}/v1/blobs/logs/bundle`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/gzip' },
      body: new Uint8Array(randomBytes(1001)),
    });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ code: 'OUTPOST_BLOB_TOO_LARGE', limit: 1000 });
    expect(await hub!.core.store.document('logs', 'bundle')).toBeUndefined();
    expect(readdirSync(join(dir, 'hub', 'content', 'spool')), 'its spool cleared').toEqual([]);
    const fits = await fetch(`${base}/v1/blobs/logs/bundle`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/gzip' },
      body: new Uint8Array(1000),
    });
    expect(fits.status).toBe(200);
  });

  it('answers a clear error for what is not a blob, and asks for the admin token', async () => {
    const { base, auth } = await start(tempDir('blobs-http'));
    expect(
      (await fetch(`${base}/v1/blobs/firmware/x`, { method: 'PUT', body: 'x', headers: { 'content-type': 'text/plain' } })).status,
    ).toBe(401);
    const missing = await fetch(`${base}/v1/blobs/firmware/none`, { headers: auth });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 'OUTPOST_NOT_FOUND' });
    await fetch(`${base}/v1/docs/firmware/plain`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/json' },
      body: '{"v":1}',
    });
    const plain = await fetch(`${base}/v1/blobs/firmware/plain`, { headers: auth });
    expect(plain.status, 'a document that names no blob').toBe(404);
    const forged = { sha256: contentHash(Buffer.from('never uploaded')), size: 14, contentType: 'text/plain' };
    await fetch(`${base}/v1/docs/firmware/forged`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify(forged),
    });
    const noContent = await fetch(`${base}/v1/blobs/firmware/forged`, { headers: auth });
    expect(noContent.status, 'a document naming content the hub does not hold').toBe(404);
    expect(await noContent.json()).toMatchObject({ code: 'OUTPOST_NOT_FOUND' });
    const empty = await fetch(`${base}/v1/blobs/firmware/empty`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'text/plain' },
      body: '',
    });
    expect(await empty.json()).toMatchObject({ outcome: 'committed', blob: { size: 0, sha256: contentHash(Buffer.alloc(0)) } });
    expect((await (await fetch(`${base}/v1/blobs/firmware/empty`, { headers: auth })).arrayBuffer()).byteLength).toBe(0);
  });
});
