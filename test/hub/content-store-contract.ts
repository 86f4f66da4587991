import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { ContentStore } from '../../content/content-store.js';
import { BLOB_CHUNK_BYTES, chunkCount, contentHash } from '../../shared/blobs.js';
import { ErrorCode } from '../../shared/errors.js';

/** How a contract run makes, opens again and (to age it) ages a store. */
export interface ContentStoreUnderTest {
  /** A new, empty place for a store (a directory, a database URL). */
  fresh(): Promise<string>;
  /** A store over `location`; a second one over the same location is the hub after a restart. */
  open(location: string): Promise<ContentStore>;
  /** Makes everything at `location` look last touched `ms` ago. */
  age(location: string, ms: number): Promise<void>;
}

/** Content of `size` random bytes and its chunks, as an uploader cuts them. */
function content(size: number): { hash: string; bytes: Buffer; chunks: Buffer[] } {
  const bytes = randomBytes(size);
  const chunks = Array.from({ length: chunkCount(size) }, (_, i) => bytes.subarray(i * BLOB_CHUNK_BYTES, (i + 1) * BLOB_CHUNK_BYTES));
  return { hash: contentHash(bytes), bytes, chunks };
}

async function readAll(store: ContentStore, hash: string, size: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < chunkCount(size); i++) chunks.push(await store.readChunk(hash, i));
  return Buffer.concat(chunks);
}

/** Rejects with an Outpost error of `code`. */
async function refused(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code });
}

/** The contract every ContentStore keeps, whatever holds the bytes. */
export function contentStoreContract(name: string, subject: ContentStoreUnderTest, skip?: string): void {
  describe.skipIf(skip !== undefined)(`ContentStore contract: ${name}${skip ? ` (${skip})` : ''}`, () => {
    let location: string;
    let store: ContentStore;
    const opened: ContentStore[] = [];
    const open = async (): Promise<ContentStore> => {
      const another = await subject.open(location);
      opened.push(another);
      return another;
    };
    beforeEach(async () => {
      location = await subject.fresh();
      store = await open();
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });

    test('takes content in chunks in any order, completes it, and gives back the same bytes', async () => {
      const c = content(2 * BLOB_CHUNK_BYTES + 1000);
      expect(await store.begin(c.hash, c.bytes.length)).toEqual([0, 1, 2]);
      await store.putChunk(c.hash, 2, c.chunks[2]!);
      await store.putChunk(c.hash, 0, c.chunks[0]!);
      expect(await store.info(c.hash)).toEqual({ hash: c.hash, size: c.bytes.length, complete: false });
      await refused(store.readChunk(c.hash, 0), ErrorCode.NOT_FOUND); // no reader sees content before it is whole
      await store.putChunk(c.hash, 1, c.chunks[1]!);
      await store.complete(c.hash);
      expect(await store.info(c.hash)).toEqual({ hash: c.hash, size: c.bytes.length, complete: true });
      expect((await readAll(store, c.hash, c.bytes.length)).equals(c.bytes)).toBe(true);
    });

    test('resumes an upload at the chunks it lacks, after the hub restarted', async () => {
      const c = content(3 * BLOB_CHUNK_BYTES);
      await store.begin(c.hash, c.bytes.length);
      await store.putChunk(c.hash, 0, c.chunks[0]!);
      await store.putChunk(c.hash, 2, c.chunks[2]!);
      const restarted = await open();
      expect(await restarted.begin(c.hash, c.bytes.length)).toEqual([1]);
      await restarted.putChunk(c.hash, 1, c.chunks[1]!);
      await restarted.complete(c.hash);
      const again = await open();
      expect((await readAll(again, c.hash, c.bytes.length)).equals(c.bytes)).toBe(true);
    });

    test('holds a content once: a chunk sent twice, or an upload of content it holds, changes nothing', async () => {
      const c = content(BLOB_CHUNK_BYTES + 10);
      await store.begin(c.hash, c.bytes.length);
      await store.putChunk(c.hash, 0, c.chunks[0]!);
      await store.putChunk(c.hash, 0, c.chunks[0]!);
      expect(await store.begin(c.hash, c.bytes.length)).toEqual([1]);
      await store.putChunk(c.hash, 1, c.chunks[1]!);
      await store.complete(c.hash);
      await store.complete(c.hash);
      expect(await store.begin(c.hash, c.bytes.length), 'a second upload of held content sends nothing').toEqual([]);
      await store.putChunk(c.hash, 1, c.chunks[1]!);
      expect((await readAll(store, c.hash, c.bytes.length)).equals(c.bytes)).toBe(true);
    });

    test('keeps empty content as one empty chunk', async () => {
      const c = content(0);
      expect(await store.begin(c.hash, 0)).toEqual([0]);
      await store.putChunk(c.hash, 0, Buffer.alloc(0));
      await store.complete(c.hash);
      expect((await store.readChunk(c.hash, 0)).length).toBe(0);
    });

    test('refuses to complete content with chunks missing, and says which', async () => {
      const c = content(3 * BLOB_CHUNK_BYTES);
      await store.begin(c.hash, c.bytes.length);
      await store.putChunk(c.hash, 1, c.chunks[1]!);
      await expect(store.complete(c.hash)).rejects.toMatchObject({ code: ErrorCode.BLOB_INCOMPLETE, missing: [0, 2] });
      expect(await store.info(c.hash)).toMatchObject({ complete: false });
    });

    test('drops content whose bytes are not what its address says, and takes it again whole', async () => {
      const c = content(2 * BLOB_CHUNK_BYTES);
      await store.begin(c.hash, c.bytes.length);
      const damaged = Buffer.from(c.chunks[1]!);
      damaged[100] = damaged[100]! ^ 0xff;
      await store.putChunk(c.hash, 0, c.chunks[0]!);
      await store.putChunk(c.hash, 1, damaged);
      await refused(store.complete(c.hash), ErrorCode.BLOB_MISMATCH);
      expect(await store.info(c.hash), 'its chunks are dropped').toBeUndefined();
      await refused(store.readChunk(c.hash, 0), ErrorCode.NOT_FOUND);
      expect(await store.begin(c.hash, c.bytes.length)).toEqual([0, 1]);
      await store.putChunk(c.hash, 0, c.chunks[0]!);
      await store.putChunk(c.hash, 1, c.chunks[1]!);
      await store.complete(c.hash);
      expect((await readAll(store, c.hash, c.bytes.length)).equals(c.bytes)).toBe(true);
    });

    test('refuses chunks that cannot belong to the content, and uploads it never began', async () => {
      const c = content(BLOB_CHUNK_BYTES + 10);
      await refused(store.putChunk(c.hash, 0, c.chunks[0]!), ErrorCode.BLOB_INVALID_CHUNK); // not begun
      await store.begin(c.hash, c.bytes.length);
      await refused(store.putChunk(c.hash, 2, Buffer.alloc(10)), ErrorCode.BLOB_INVALID_CHUNK); // past the last chunk
      await refused(store.putChunk(c.hash, -1, Buffer.alloc(10)), ErrorCode.BLOB_INVALID_CHUNK);
      await refused(store.putChunk(c.hash, 0, c.chunks[0]!.subarray(1)), ErrorCode.BLOB_INVALID_CHUNK); // short
      await refused(store.putChunk(c.hash, 1, Buffer.alloc(11)), ErrorCode.BLOB_INVALID_CHUNK); // the last, too long
      await refused(store.begin(c.hash, c.bytes.length + 1), ErrorCode.BLOB_INVALID_CHUNK); // another size
      await refused(store.begin(c.hash, -1), ErrorCode.BLOB_INVALID_CHUNK);
      await refused(store.begin('../../etc/passwd', 1), ErrorCode.INVALID_MESSAGE);
      await refused(store.putChunk(c.hash.toUpperCase(), 0, c.chunks[0]!), ErrorCode.INVALID_MESSAGE);
      await refused(store.complete(content(1).hash), ErrorCode.NOT_FOUND);
      expect(await store.begin(c.hash, c.bytes.length), 'nothing refused was kept').toEqual([0, 1]);
    });

    test('completes content whose chunks arrive at once', async () => {
      const c = content(6 * BLOB_CHUNK_BYTES + 7);
      await store.begin(c.hash, c.bytes.length);
      // Every chunk, and chunk 3 twice (a resent one), all at once.
      const sends: Array<[number, Buffer]> = [...c.chunks.entries(), [3, c.chunks[3]!]];
      await Promise.all(sends.map(([i, chunk]) => store.putChunk(c.hash, i, chunk)));
      await store.complete(c.hash);
      expect((await readAll(store, c.hash, c.bytes.length)).equals(c.bytes)).toBe(true);
    });

    test('lists the content it holds whole, and removes content on demand, whatever names it', async () => {
      const [a, b, partial] = [content(10), content(BLOB_CHUNK_BYTES + 5), content(BLOB_CHUNK_BYTES + 1)];
      for (const c of [a, b]) {
        await store.begin(c.hash, c.bytes.length);
        for (const [i, chunk] of c.chunks.entries()) await store.putChunk(c.hash, i, chunk);
        await store.complete(c.hash);
      }
      await store.begin(partial.hash, partial.bytes.length);
      await store.putChunk(partial.hash, 0, partial.chunks[0]!);
      const listed = async (): Promise<Array<{ hash: string; size: number }>> => {
        const all: Array<{ hash: string; size: number }> = [];
        for await (const held of store.listComplete()) all.push(held);
        return all.sort((x, y) => x.hash.localeCompare(y.hash));
      };
      const both = [a, b].map((c) => ({ hash: c.hash, size: c.bytes.length })).sort((x, y) => x.hash.localeCompare(y.hash));
      expect(await listed()).toEqual(both);
      expect(await store.remove(a.hash)).toBe(true);
      expect(await store.info(a.hash)).toBeUndefined();
      await refused(store.readChunk(a.hash, 0), ErrorCode.NOT_FOUND);
      expect(await listed()).toEqual([{ hash: b.hash, size: b.bytes.length }]);
      expect(await store.remove(a.hash), 'held no more').toBe(false);
      // Taken again whole after its removal, as an upload of it repairs it.
      expect(await store.begin(a.hash, a.bytes.length)).toEqual([0]);
    });

    test('collects content no document names once it was left untouched, complete or not', async () => {
      const [named, unnamed, partial, fresh] = [content(10), content(20), content(BLOB_CHUNK_BYTES + 1), content(30)];
      for (const c of [named, unnamed]) {
        await store.begin(c.hash, c.bytes.length);
        await store.putChunk(c.hash, 0, c.chunks[0]!);
        await store.complete(c.hash);
      }
      await store.begin(partial.hash, partial.bytes.length);
      await store.putChunk(partial.hash, 0, partial.chunks[0]!);
      await subject.age(location, 60_000);
      await store.begin(fresh.hash, fresh.bytes.length); // an upload just begun: its document does not exist yet
      const removed = await store.collect((hash) => hash === named.hash, Date.now() - 30_000);
      expect(removed.sort()).toEqual([unnamed.hash, partial.hash].sort());
      expect(await store.info(named.hash)).toMatchObject({ complete: true });
      expect(await store.info(fresh.hash)).toMatchObject({ complete: false });
      for (const gone of [unnamed, partial]) expect(await store.info(gone.hash)).toBeUndefined();
      expect(await store.collect((hash) => hash === named.hash, Date.now() - 30_000), 'the fresh upload is still too young').toEqual([]);
    });
  });
}
