import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { readFileSync, utimesSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BLOB_CHUNK_BYTES, chunkCount, CONTENT_HASH } from '../shared/blobs.js';
import { BlobChunkError, BlobIncompleteError, BlobMismatchError, BlobTooLargeError } from '../shared/blob-errors.js';
import { NotFoundError } from '../shared/errors.js';
import { checkChunk, checkHash, checkSize, missingChunks, type ContentInfo, type ContentStore } from './content-store.js';

/**
 * Blob content in files under `<root>` (a SQLite hub's data directory's `content/`, a device's cache), one per
 * chunk, each written to a temporary name, fsynced, renamed into place and its directory fsynced,
 * so that a chunk is either whole on disk or absent after a crash.
 *
 *   uploads/<hash>/size, uploads/<hash>/<index>     content being received
 *   objects/<hash[0..2]>/<hash>/size, …/<index>     complete content, checked against its address
 *   spool/                                          content streamed in whose address is not known yet
 *
 * Completing renames the upload's directory into `objects/` in one step, after its bytes were
 * hashed whole. A directory's modification time is when it was last touched (`collect`).
 * Operations on one content take turns in this process; one hub process owns a data directory.
 */
export class FileContentStore implements ContentStore {
  readonly #turns = new Map<string, Promise<unknown>>();
  /** Content `collect` is deciding on or removing now: it reads as not held (see keepIfWholeSync). */
  readonly #removing = new Set<string>();
  /** The store's directories, made and fsynced (with their parents' entries) once. */
  #prepared: Promise<void> | undefined;
  /** Content streamed in waits here (`spool/`), on the disk that will hold it, not in a RAM-backed /tmp. */
  readonly spoolDir: string;

  constructor(private readonly root: string) {
    this.spoolDir = join(root, 'spool');
  }

  async begin(hash: string, size: number): Promise<number[]> {
    checkHash(hash);
    checkSize(hash, size);
    await this.#prepare();
    return this.#inTurn(hash, async () => {
      const held = await this.#held(hash);
      if (held) {
        if (held.size !== size) throw new BlobChunkError(hash, 0, `its upload was begun with ${held.size} bytes, not ${size}`);
        await touch(held.dir);
        return held.complete ? [] : missingChunks(size, await this.#chunksIn(held.dir));
      }
      const dir = this.#uploadDir(hash);
      await mkdir(dir, { recursive: true });
      await writeDurably(dir, 'size', Buffer.from(String(size)));
      await syncDir(join(this.root, 'uploads'));
      return missingChunks(size, new Set());
    });
  }

  async putChunk(hash: string, index: number, bytes: Uint8Array): Promise<void> {
    checkHash(hash);
    return this.#inTurn(hash, async () => {
      const held = await this.#held(hash);
      if (!held) throw new BlobChunkError(hash, index, 'its upload was not begun; begin it with the content size first');
      checkChunk(hash, held.size, index, bytes.length);
      if (held.complete) return; // held whole already: nothing to add
      if (await exists(join(held.dir, String(index)))) return touch(held.dir);
      await writeDurably(held.dir, String(index), bytes);
    });
  }

  async complete(hash: string): Promise<void> {
    checkHash(hash);
    return this.#inTurn(hash, async () => {
      const held = await this.#held(hash);
      if (!held) throw new NotFoundError(`no upload of content ${hash} here; begin it first`);
      if (held.complete) return;
      const missing = missingChunks(held.size, await this.#chunksIn(held.dir));
      if (missing.length > 0) throw new BlobIncompleteError(hash, missing);
      const sha = createHash('sha256');
      let size = 0;
      for (let i = 0; i < chunkCount(held.size); i++) {
        const chunk = await readFile(join(held.dir, String(i)));
        sha.update(chunk);
        size += chunk.length;
      }
      const actual = sha.digest('hex');
      if (actual !== hash || size !== held.size) {
        await this.#discard(held.dir);
        throw new BlobMismatchError(hash, actual !== hash ? `its bytes hash to ${actual}` : `it holds ${size} bytes, not ${held.size}`);
      }
      const shard = join(this.root, 'objects', hash.slice(0, 2));
      // A new shard's entry in objects/ must reach the disk too, or a power cut takes the content with it.
      if ((await mkdir(shard, { recursive: true })) !== undefined) await syncDir(join(this.root, 'objects'));
      await rename(held.dir, join(shard, hash));
      await syncDir(shard);
      await syncDir(join(this.root, 'uploads'));
      await touch(join(shard, hash));
    });
  }

  /**
   * Whether content is complete here at `size`, read at once: for a group commit, which decides
   * synchronously whether a blob's document may commit (SqliteHubStore.ingest).
   */
  holdsWholeSync(hash: string, size: number): boolean {
    if (!CONTENT_HASH.test(hash) || this.#removing.has(hash)) return false;
    try {
      return Number(readFileSync(join(this.#objectDir(hash), 'size'), 'utf8')) === size;
    } catch {
      return false;
    }
  }

  /**
   * For a group commit about to commit documents naming content: whether it is complete here at
   * `size`, and if so touched now, so that a collection keeps it (it removes only content
   * untouched for its grace, deciding under the content's turn; content it is deciding on reads
   * as not held here, and the document is refused). Synchronous, like holdsWholeSync.
   */
  keepIfWholeSync(hash: string, size: number): boolean {
    if (!this.holdsWholeSync(hash, size)) return false;
    try {
      const now = new Date();
      utimesSync(this.#objectDir(hash), now, now);
      return true;
    } catch {
      return false;
    }
  }

  async info(hash: string): Promise<ContentInfo | undefined> {
    checkHash(hash);
    const held = await this.#held(hash);
    return held && { hash, size: held.size, complete: held.complete };
  }

  async *listComplete(): AsyncGenerator<{ hash: string; size: number }> {
    const objects = join(this.root, 'objects');
    for (const shard of await list(objects)) {
      for (const hash of await list(join(objects, shard))) {
        const size = await readFile(join(objects, shard, hash, 'size'), 'utf8').catch(() => undefined);
        if (size !== undefined && CONTENT_HASH.test(hash)) yield { hash, size: Number(size) };
      }
    }
  }

  async readChunk(hash: string, index: number): Promise<Buffer> {
    checkHash(hash);
    const held = await this.#held(hash);
    if (!held?.complete) throw new NotFoundError(`no complete content ${hash} here`);
    const bytes = await readFile(join(held.dir, String(index))).catch(() => undefined);
    if (!bytes) throw new NotFoundError(`content ${hash} has no chunk ${index} (it has ${chunkCount(held.size)})`);
    return bytes;
  }

  async collect(named: (hash: string) => boolean, untouchedSince: number): Promise<string[]> {
    const candidates = [
      ...(await list(join(this.root, 'uploads'))).map((hash) => join(this.root, 'uploads', hash)),
      ...(await Promise.all((await list(join(this.root, 'objects'))).map((shard) => listIn(join(this.root, 'objects', shard))))).flat(),
    ];
    // What a hub killed while content streamed in left behind (never named: not reported). A
    // spool is as old as its file's last write: one still streaming in is not.
    for (const stale of await listIn(this.spoolDir)) {
      const touched = await Promise.all([stat(stale), stat(join(stale, 'content'))].map((s) => s.catch(() => undefined)));
      const newest = Math.max(...touched.map((t) => t?.mtimeMs ?? 0));
      if (newest < untouchedSince) await rm(stale, { recursive: true, force: true });
    }
    // Content a crash interrupted the removal of.
    for (const left of await listIn(join(this.root, 'trash'))) await rm(left, { recursive: true, force: true });
    const removed: string[] = [];
    for (const dir of candidates) {
      const hash = dir.slice(dir.lastIndexOf('/') + 1);
      if (named(hash)) continue;
      await this.#inTurn(hash, async () => {
        this.#removing.add(hash);
        try {
          const touched = await stat(dir).catch(() => undefined);
          if (!touched || touched.mtimeMs >= untouchedSince) return;
          await this.#discard(dir);
          removed.push(hash);
        } finally {
          this.#removing.delete(hash);
        }
      });
    }
    return removed;
  }

  /**
   * Stores streamed content whole, writing each byte once (a flash card's wear): its chunks go to
   * a directory of their own under `spool/` as they come, hashed on the way (each file fsynced,
   * the directory once at the end); the directory then becomes the content's upload in one rename
   * and is completed (checked against its address by reading it back). Content held already keeps
   * what it has and takes the chunks it lacks. Over `maxBytes`, it stops at once and keeps nothing.
   */
  async storeStream(body: AsyncIterable<Uint8Array>, maxBytes: number): Promise<{ sha256: string; size: number }> {
    await this.#prepare();
    await mkdir(this.spoolDir, { recursive: true });
    const staging = join(this.spoolDir, `stream-${randomBytes(6).toString('hex')}`);
    await mkdir(staging);
    try {
      const sha = createHash('sha256');
      let size = 0;
      let index = 0;
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flush = async (): Promise<void> => {
        await writeSynced(join(staging, String(index++)), Buffer.concat(pending, pendingBytes));
        pending = [];
        pendingBytes = 0;
      };
      for await (const piece of body) {
        size += piece.length;
        if (size > maxBytes) throw new BlobTooLargeError(maxBytes);
        sha.update(piece);
        let rest = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
        while (rest.length > 0) {
          const take = Math.min(rest.length, BLOB_CHUNK_BYTES - pendingBytes);
          pending.push(rest.subarray(0, take));
          pendingBytes += take;
          rest = rest.subarray(take);
          if (pendingBytes === BLOB_CHUNK_BYTES) await flush();
        }
      }
      if (pendingBytes > 0 || index === 0) await flush(); // the last chunk (empty content: one empty chunk)
      const sha256 = sha.digest('hex');
      await writeSynced(join(staging, 'size'), Buffer.from(String(size)));
      await syncDir(staging);
      await this.#inTurn(sha256, async () => {
        const held = await this.#held(sha256);
        if (held?.complete) return;
        if (!held) {
          await rename(staging, this.#uploadDir(sha256));
          await syncDir(join(this.root, 'uploads'));
          return;
        }
        if (held.size !== size) throw new BlobChunkError(sha256, 0, `its upload was begun with ${held.size} bytes, not ${size}`);
        const have = await this.#chunksIn(held.dir);
        for (const i of missingChunks(size, have)) await rename(join(staging, String(i)), join(held.dir, String(i)));
        await syncDir(held.dir);
      });
      await this.complete(sha256);
      return { sha256, size };
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  /** Removes content, complete or not (a device's cache evicting it); false if it was not held. */
  async remove(hash: string): Promise<boolean> {
    checkHash(hash);
    return this.#inTurn(hash, async () => {
      const held = await this.#held(hash);
      if (!held) return false;
      await this.#discard(held.dir);
      return true;
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#turns.values());
  }

  /** Runs `fn` after every earlier operation on `hash` in this process settled. */
  #inTurn<T>(hash: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#turns.get(hash) ?? Promise.resolve();
    const mine = before.then(fn, fn);
    const settled = mine.catch(() => undefined);
    this.#turns.set(hash, settled);
    void settled.then(() => {
      if (this.#turns.get(hash) === settled) this.#turns.delete(hash);
    });
    return mine;
  }

  /** Makes the store's directories, their entries durable, once per process. */
  #prepare(): Promise<void> {
    this.#prepared ??= (async () => {
      for (const dir of ['uploads', 'objects', 'trash']) await mkdir(join(this.root, dir), { recursive: true });
      await syncDir(this.root);
      await syncDir(dirname(this.root));
    })();
    return this.#prepared;
  }

  /**
   * Removes content in one step: renamed out of `uploads/` or `objects/` first (durably), then
   * deleted. A crash halfway through a recursive delete could otherwise leave its `size` and some
   * chunks, which would read as content held whole.
   */
  async #discard(dir: string): Promise<void> {
    const parent = dirname(dir);
    const trash = join(this.root, 'trash', `${randomBytes(6).toString('hex')}`);
    await mkdir(dirname(trash), { recursive: true });
    await rename(dir, trash);
    await syncDir(parent);
    await rm(trash, { recursive: true, force: true });
  }

  #uploadDir(hash: string): string {
    return join(this.root, 'uploads', hash);
  }

  #objectDir(hash: string): string {
    return join(this.root, 'objects', hash.slice(0, 2), hash);
  }

  /** Where the content is held and at what size, complete or not; undefined if it is not. */
  async #held(hash: string): Promise<{ dir: string; size: number; complete: boolean } | undefined> {
    for (const [dir, complete] of [
      [this.#objectDir(hash), true],
      [this.#uploadDir(hash), false],
    ] as const) {
      const text = await readFile(join(dir, 'size'), 'utf8').catch(() => undefined);
      if (text !== undefined) return { dir, size: Number(text), complete };
    }
    return undefined;
  }

  async #chunksIn(dir: string): Promise<Set<number>> {
    return new Set((await readdir(dir)).filter((name) => /^\d+$/.test(name)).map(Number));
  }
}

/** Writes `name` in `dir` whole or not at all: a temporary file, fsynced, renamed, the directory fsynced. */
async function writeDurably(dir: string, name: string, bytes: Uint8Array): Promise<void> {
  const temporary = join(dir, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
  const file = await open(temporary, 'w');
  try {
    await file.writeFile(bytes);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, join(dir, name));
  await syncDir(dir);
}

/** Writes a file and fsyncs it (its directory's entry is the caller's to make durable). */
async function writeSynced(path: string, bytes: Uint8Array): Promise<void> {
  const file = await open(path, 'w');
  try {
    await file.writeFile(bytes);
    await file.sync();
  } finally {
    await file.close();
  }
}

/** Flushes a directory's entries (a rename into it) to disk. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function touch(dir: string): Promise<void> {
  const now = new Date();
  await utimes(dir, now, now);
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}

/** The entries of a directory, none if it does not exist; temporary files left by a crash are not entries. */
async function list(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).filter((name) => !name.startsWith('.'));
}

async function listIn(dir: string): Promise<string[]> {
  return (await list(dir)).map((name) => join(dir, name));
}
