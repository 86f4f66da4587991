import type { AgentDb } from './agent-db.js';
import { rowHash, type HashedColumns } from './replica-digests.js';

interface ScrubbedRow extends HashedColumns {
  evicted: number;
  hash: number | null;
}

/** What one scrub step read and found. */
export interface ScrubStep {
  /** Held documents whose stored hash is not the hash of what the row holds (or that have none). */
  rotten: Array<{ collection: string; key: string }>;
  /** The last row read, to go on after; undefined once the step reached the end of the table. */
  next: [string, string] | undefined;
  /** Bytes of values and keys read. */
  bytesRead: number;
}

/**
 * Reads the replica a stretch at a time, in (collection, key) order, to find the rows that rotted
 * in the file: a value, version or flag that changed on the medium under its stored hash, or a
 * stored hash that did. The digests are kept from the stored hashes, so such damage leaves them
 * as they were and only reading the rows again shows it. Read-only: on flash, every write wears
 * it, and what to do about a rotten row (fetch it again from the hub) is the caller's.
 */
export class Scrub {
  readonly #s;

  constructor(db: AgentDb) {
    const columns = 'collection, key, value, deleted, version, evicted, hash';
    this.#s = {
      first: db.prepare<[], ScrubbedRow>(`SELECT ${columns} FROM documents ORDER BY collection, key`),
      after: db.prepare<[string, string], ScrubbedRow>(
        `SELECT ${columns} FROM documents WHERE (collection, key) > (?, ?) ORDER BY collection, key`,
      ),
    };
  }

  /**
   * Reads rows after `after` (from the first when undefined) until about `maxBytes` of them are
   * read (at least one row, however large), and checks each held one's stored hash.
   */
  step(after: readonly [string, string] | undefined, maxBytes: number): ScrubStep {
    const rows = after === undefined ? this.#s.first.iterate() : this.#s.after.iterate(after[0], after[1]);
    const step: ScrubStep = { rotten: [], next: undefined, bytesRead: 0 };
    for (const row of rows) {
      step.bytesRead += Buffer.byteLength(row.key) + (row.value?.length ?? 0);
      if (row.evicted === 0 && row.hash !== rowHash(row)) step.rotten.push({ collection: row.collection, key: row.key });
      if (step.bytesRead >= maxBytes) {
        step.next = [row.collection, row.key];
        break; // (closes the statement)
      }
    }
    return step;
  }
}
