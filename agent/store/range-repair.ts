import { asBuffer } from '../../shared/value-bytes.js';
import { documentHash, inRanges } from '../../shared/digest.js';
import type { Change } from '../../shared/messages.js';
import type { AgentDb } from './agent-db.js';

/** The keys a repair page covers, in key order: after `after` (exclusive) through `through` (inclusive); undefined is unbounded. */
export interface KeyWindow {
  after: string | undefined;
  through: string | undefined;
}

/** What a repair page changed in the replica: documents written as the hub has them, phantoms removed, value bytes written. */
export interface RangeRepaired {
  written: Array<{ collection: string; key: string }>;
  removed: Array<{ collection: string; key: string }>;
  bytes: number;
}

interface RepairedRow {
  value: Buffer | null;
  deleted: number;
  version: number;
  hlc: string;
  origin: string;
  buckets: string | null;
  evicted: number;
  hash: number | null;
}

/**
 * Puts key ranges whose digests differ from the hub's back as the hub has them, a page of the
 * hub's documents at a time. Unlike an apply, it writes a document at the version the replica
 * already holds: what differs at the same version is damage (a value that rotted in the file).
 */
export class RangeRepair {
  readonly #s;
  /** The statements listing a key window's held documents, by which of its ends are bounded. */
  readonly #windows = new Map<string, ReturnType<AgentDb['prepare']>>();

  constructor(private readonly db: AgentDb) {
    this.#s = {
      row: db.prepare<[string, string], RepairedRow>(
        'SELECT value, deleted, version, hlc, origin, buckets, evicted, hash FROM documents WHERE collection = ? AND key = ?',
      ),
      write: db.prepare<[string, string, Buffer | null, number, number, string, string, string | null, number]>(
        `INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, buckets, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value, deleted = excluded.deleted, version = excluded.version,
           hlc = excluded.hlc, origin = excluded.origin, buckets = excluded.buckets, evicted = 0, hash = excluded.hash`,
      ),
      remove: db.prepare<[string, string]>('DELETE FROM documents WHERE collection = ? AND key = ?'),
    };
  }

  /**
   * One page of the hub's documents `docs` in the ranges `ranges` (of depth `depth`) of a
   * collection, as of the hub's LSN `lsn`, in one transaction. Each is written as the hub has
   * it, unless the replica holds a newer version (it applied a later change since) or already
   * holds exactly that (no write: flash wears). A held document of the ranges and the key window
   * that the page does not list is one the hub does not have: it is removed, unless newer than
   * `lsn`. The outbox is not touched: pending writes lie over what the replica holds, as ever.
   */
  repair(
    collection: string,
    depth: number,
    ranges: readonly number[],
    docs: readonly Change[],
    window: KeyWindow,
    lsn: number,
  ): RangeRepaired {
    return this.db.transaction(() => {
      const repaired: RangeRepaired = { written: [], removed: [], bytes: 0 };
      const listed = new Set<string>();
      for (const doc of docs) {
        if (doc.c === collection) listed.add(doc.k);
        const bytes = this.write(doc, doc.bk);
        if (bytes === undefined) continue;
        repaired.written.push({ collection: doc.c, key: doc.k });
        repaired.bytes += bytes;
      }
      const wanted = new Set(ranges);
      for (const row of this.#held(collection, window)) {
        if (listed.has(row.key) || row.version > lsn || !inRanges(row.key, depth, wanted)) continue;
        this.#s.remove.run(collection, row.key);
        repaired.removed.push({ collection, key: row.key });
      }
      return repaired;
    });
  }

  /**
   * Writes one of the hub's documents, stored with the buckets `bk`, unless the replica holds a
   * newer version or this one intact (buckets too); the value bytes written, or undefined if it
   * wrote nothing. In the caller's transaction.
   */
  write(doc: Change, bk: readonly string[] | undefined): number | undefined {
    const value = doc.v === undefined ? null : asBuffer(doc.v);
    const deleted = doc.op === 'del' ? 1 : 0;
    const hash = documentHash(doc.c, doc.k, doc.lsn, deleted === 1, value);
    const buckets = bk === undefined ? null : JSON.stringify(bk);
    const row = this.#s.row.get(doc.c, doc.k);
    if (row && row.version > doc.lsn) return undefined;
    const intact =
      row !== undefined &&
      row.version === doc.lsn &&
      row.evicted === 0 &&
      row.deleted === deleted &&
      row.hash === hash &&
      row.hlc === doc.hlc &&
      row.origin === doc.o &&
      row.buckets === buckets &&
      (value === null ? row.value === null : Buffer.isBuffer(row.value) && row.value.equals(value));
    if (intact) return undefined;
    this.#s.write.run(doc.c, doc.k, value, deleted, doc.lsn, doc.hlc, doc.o, buckets, hash);
    return value?.length ?? 0;
  }

  /** Keys and versions of the collection's held documents in the window (tombstones included). */
  #held(collection: string, window: KeyWindow): Array<{ key: string; version: number }> {
    const shape = `${window.after === undefined ? '' : '>'}${window.through === undefined ? '' : '<='}`;
    let statement = this.#windows.get(shape);
    if (!statement) {
      const bounds = `${window.after === undefined ? '' : ' AND key > ?'}${window.through === undefined ? '' : ' AND key <= ?'}`;
      statement = this.db.prepare(`SELECT key, version FROM documents WHERE collection = ? AND evicted = 0${bounds}`);
      this.#windows.set(shape, statement);
    }
    const params = [collection, window.after, window.through].filter((p) => p !== undefined);
    return statement.all(...params) as Array<{ key: string; version: number }>;
  }
}
