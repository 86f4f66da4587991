import type { DigestsBefore } from './write-rows.js';

/**
 * What one SQLite group commit knows of digests beyond its database rows: each collection's
 * digest as its changes so far moved it (written to `collections` with the collection's head, or
 * as the transaction ends), and the stored hash of the document read last, which the commit of
 * that document needs (the Ingestor reads each document just before committing it: no second
 * read). Forgotten as the transaction ends, committed or rolled back, so nothing of a rolled-back
 * group commit survives it.
 */
export class GroupDigests {
  readonly #digests = new Map<string, number>();
  /** Collections whose digest moved and is not written yet, with the LSN of their last change here. */
  readonly #unsaved = new Map<string, number>();
  #last: { collection: string; key: string; hash: number } | undefined;

  /** A document as read: its stored hash (0: none), and its collection's stored digest, unless moved here already. */
  read(collection: string, key: string, hash: number, storedDigest: number): void {
    this.#last = { collection, key, hash };
    if (!this.#digests.has(collection)) this.#digests.set(collection, storedDigest);
  }

  /** Where a change of this document starts from, if it was the one read (or written) last. */
  before(collection: string, key: string): DigestsBefore | undefined {
    const last = this.#last;
    const digest = this.#digests.get(collection);
    if (!last || last.collection !== collection || last.key !== key || digest === undefined) return undefined;
    return { hash: last.hash, digest };
  }

  committed(collection: string, key: string, lsn: number, hash: number, digest: number): void {
    this.#last = { collection, key, hash };
    this.#digests.set(collection, digest);
    this.#unsaved.set(collection, lsn);
  }

  /** The digest to write with a collection's head, now written (undefined: not known here, so unchanged). */
  save(collection: string): number | undefined {
    this.#unsaved.delete(collection);
    return this.#digests.get(collection);
  }

  /** The digests moved and not written with a head, with the LSN of their last change (for a collection without a row yet). */
  unsaved(): Array<{ collection: string; lsn: number; digest: number }> {
    if (this.#unsaved.size === 0) return []; // as a group commit that sets its heads leaves it
    return [...this.#unsaved].map(([collection, lsn]) => ({ collection, lsn, digest: this.#digests.get(collection)! }));
  }

  clear(): void {
    this.#digests.clear();
    this.#unsaved.clear();
    this.#last = undefined;
  }
}
