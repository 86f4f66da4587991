import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pino from 'pino';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceContent } from '../../agent/blobs/device-content.js';
import { AgentStore } from '../../agent/store/agent-store.js';
import { BLOB_CHUNK_BYTES, contentHash } from '../../shared/blobs.js';
import { ageTree, tempDir } from '../helpers/temp.js';

describe("a device's blob content", () => {
  let store: AgentStore | undefined;
  afterEach(() => store?.close());

  it('sweeps a download left partial a day ago, and keeps what a pending upload needs and what the cache counts', async () => {
    const dir = tempDir('device-content');
    store = new AgentStore(dir);
    const content = new DeviceContent(dir, store, 64 * 1024 * 1024, pino({ level: 'silent' }));
    // A download that stopped after one chunk.
    const partial = randomBytes(2 * BLOB_CHUNK_BYTES);
    const partialHash = contentHash(partial);
    await content.files.begin(partialHash, partial.length);
    await content.files.putChunk(partialHash, 0, partial.subarray(0, BLOB_CHUNK_BYTES));
    // A blob written here, not uploaded yet; and content the cache holds.
    const own = await content.storeStreamed(Readable.from([randomBytes(1000)]), 1e6);
    store.blobUploads.add('photos', 'own', { ...own, contentType: 'image/jpeg' }, '0000000000000001');
    const cached = await content.storeStreamed(Readable.from([randomBytes(2000)]), 1e6);
    ageTree(join(dir, 'content'), 2 * 24 * 3600_000);

    expect(await content.sweep()).toEqual([partialHash]);
    const held = async (hash: string) => (await content.files.info(hash)) !== undefined;
    expect(await held(partialHash)).toBe(false);
    expect(await held(own.sha256)).toBe(true);
    expect(await held(cached.sha256)).toBe(true);
    // Touched within the day: a download that may still resume is kept.
    await content.files.begin(partialHash, partial.length);
    expect(await content.sweep()).toEqual([]);
    await content.close();
  });
});
