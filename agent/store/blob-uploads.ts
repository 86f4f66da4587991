import type { BlobDescriptor } from '../../shared/blobs.js';
import { encodeValue } from '../../shared/value-bytes.js';
import type { AgentDb } from './agent-db.js';
import type { Partitions } from './partitions.js';
import type { Rejection, Rejections } from './rejections.js';

/** A blob written on this device whose content the hub does not hold whole yet. */
export interface PendingBlob extends BlobDescriptor {
  id: number;
  collection: string;
  key: string;
  /** When it was written (the HLC its document commits with). */
  hlc: string;
  createdAt: number;
}

interface Row {
  id: number;
  collection: string;
  key: string;
  sha256: string;
  size: number;
  content_type: string;
  hlc: string;
  created_at: number;
}

const toPending = (r: Row): PendingBlob => ({
  id: r.id,
  collection: r.collection,
  key: r.key,
  sha256: r.sha256,
  size: r.size,
  contentType: r.content_type,
  hlc: r.hlc,
  createdAt: r.created_at,
});

/**
 * Blobs written on this device that wait for the hub to hold their content (agent/blobs/): their
 * document joins the outbox only then, in the transaction that removes them from here. Uploaded
 * oldest first; a read of the document's blob sees the newest of them.
 */
export class BlobUploads {
  readonly #s;
  /** How many wait, kept in memory: every read asks whether one lays over its document. */
  #waiting: number;

  constructor(
    private readonly db: AgentDb,
    private readonly rejections: Rejections,
    private readonly partitions: Partitions,
  ) {
    this.#s = {
      insert: db.prepare<[string, string, string, number, string, string, number]>(
        `INSERT INTO blob_uploads (collection, key, sha256, size, content_type, hlc, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ),
      oldest: db.prepare<[], Row>('SELECT * FROM blob_uploads ORDER BY id LIMIT 1'),
      all: db.prepare<[], Row>('SELECT * FROM blob_uploads ORDER BY id'),
      newestOf: db.prepare<[string, string], Row>('SELECT * FROM blob_uploads WHERE collection = ? AND key = ? ORDER BY id DESC LIMIT 1'),
      keysFrom: db.prepare<[string, string, number], { key: string }>(
        'SELECT DISTINCT key FROM blob_uploads WHERE collection = ? AND key >= ? ORDER BY key LIMIT ?',
      ),
      remove: db.prepare<[number]>('DELETE FROM blob_uploads WHERE id = ?'),
      count: db.prepare<[], { n: number; bytes: number | null }>('SELECT count(*) AS n, sum(size) AS bytes FROM blob_uploads'),
      hashes: db.prepare<[], { sha256: string }>('SELECT DISTINCT sha256 FROM blob_uploads'),
    };
    this.#waiting = this.#s.count.get()!.n;
  }

  /** No blob waits for its upload. */
  get empty(): boolean {
    return this.#waiting === 0;
  }

  /** Records a blob whose content is held on the device, durably (it is the app's write). */
  add(collection: string, key: string, blob: BlobDescriptor, hlc: string, now = Date.now()): PendingBlob {
    const { lastInsertRowid } = this.db.durableTransaction(() =>
      this.#s.insert.run(collection, key, blob.sha256, blob.size, blob.contentType, hlc, now),
    );
    this.#waiting += 1;
    return { id: Number(lastInsertRowid), collection, key, ...blob, hlc, createdAt: now };
  }

  oldest(): PendingBlob | undefined {
    const row = this.#s.oldest.get();
    return row && toPending(row);
  }

  list(): PendingBlob[] {
    return this.#s.all.all().map(toPending);
  }

  /** The newest blob written to a document that waits for its upload. */
  newestOf(collection: string, key: string): PendingBlob | undefined {
    const row = this.#s.newestOf.get(collection, key);
    return row && toPending(row);
  }

  /** Keys of `collection` from `from` on (in key order, at most `limit`) with a blob waiting for its upload. */
  keysFrom(collection: string, from: string, limit: number): string[] {
    return this.#s.keysFrom.all(collection, from, limit).map((r) => r.key);
  }

  /** Forgets an upload; inside the transaction that queues its document, or that gives it up. */
  remove(id: number): void {
    this.#s.remove.run(id);
  }

  /** Counts again what waits: after the transaction that removed an upload committed (a failed one removed nothing). */
  recount(): void {
    this.#waiting = this.#s.count.get()!.n;
  }

  /**
   * Gives an upload up (the hub will not take its content) and records why, where the app reads
   * rejections, in one transaction. Its seq is 0: the write never joined a sequence.
   */
  giveUp(pending: PendingBlob, partition: string, refusal: { code: string; message: string }, now = Date.now()): Rejection {
    const rejection = this.db.transaction(() => {
      this.remove(pending.id);
      const { collection, key, sha256, size, contentType } = pending;
      const value = encodeValue({ sha256, size, contentType });
      return this.rejections.record(
        this.partitions.incarnationOf(partition),
        { partition, seq: 0, collection, key, op: 'put', value },
        { outcome: 'rejected', reason: refusal.code, detail: refusal.message.slice(0, 1024), at: now },
      );
    });
    this.recount();
    return rejection;
  }

  /** How many uploads wait, and their bytes. */
  count(): { blobs: number; bytes: number } {
    const { n, bytes } = this.#s.count.get()!;
    return { blobs: n, bytes: bytes ?? 0 };
  }

  /** The content every waiting upload needs: never evicted from the cache. */
  hashes(): Set<string> {
    return new Set(this.#s.hashes.all().map((r) => r.sha256));
  }
}
