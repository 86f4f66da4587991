import { asBuffer } from '../../shared/value-bytes.js';
import { documentHash } from '../../shared/digest.js';
import type { Change } from '../../shared/messages.js';
import { applyPatch, type JsonValue } from '../../shared/values.js';
import type { AgentDb } from './agent-db.js';
import type { CollectionCursors } from './collection-cursors.js';
import type { Outbox } from './outbox.js';
import type { Partitions, SnapshotProgress } from './partitions.js';
import { bucketsAfterLeaving, vouchedBuckets } from './bucket-membership.js';
import { RangeRepair, type KeyWindow, type RangeRepaired } from './range-repair.js';
import { ReplicaDigests, type RangeDigests } from './replica-digests.js';
import type { HeldBucket, ScopeBuckets } from './scope-buckets.js';
import { Scrub, type ScrubStep } from './scrub.js';
import { decodeValue } from './writes.js';

/** A document as an app sees it. `pending` says the device's own unconfirmed writes shaped it. */
export interface AgentDocument {
  collection: string;
  key: string;
  value: JsonValue;
  /** LSN of the confirmed version underneath (0 if the hub has not confirmed any yet). */
  version: number;
  pending: boolean;
}

interface DocRow {
  value: Buffer | null;
  deleted: number;
  version: number;
}

/** A document the device no longer holds: it left the device's scope (it lives on at the hub and on other devices). */
export interface EvictedDocument {
  collection: string;
  key: string;
}

/** The bucket a change came through, and the buckets the device holds (each with how far it is applied). */
interface Via {
  bucket: string;
  held: ReadonlyMap<string, HeldBucket>;
}

/** What applying a bucket's changes did: the changes that landed, and the documents evicted. */
export interface BucketApplied {
  applied: Change[];
  evicted: EvictedDocument[];
}

/**
 * The confirmed replica: each document at the newest version the hub committed that reached
 * this device (a delete kept as a tombstone, so an older change never brings it back), and per
 * collection the highest LSN applied. Reads lay the device's pending writes (the outbox) over it.
 * Each document held keeps the hash of its state, and each collection their sum, its digest
 * (replica-digests.ts), which the hub compares with its own to find what differs.
 */
export class Replica {
  readonly #s;
  readonly #digests: ReplicaDigests;
  readonly #repair: RangeRepair;
  readonly #scrub: Scrub;

  constructor(
    private readonly db: AgentDb,
    private readonly outbox: Outbox,
    private readonly partitions: Partitions,
    private readonly scope: ScopeBuckets,
    private readonly collectionCursors: CollectionCursors,
  ) {
    this.#s = {
      document: db.prepare<[string, string], DocRow>('SELECT value, deleted, version FROM documents WHERE collection = ? AND key = ?'),
      // An evicted stub gives way to its own version too: a document that comes back unchanged.
      upsert: db.prepare<[string, string, Buffer | null, number, number, string, string, string | null, number]>(
        `INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, buckets, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value, deleted = excluded.deleted, version = excluded.version,
           hlc = excluded.hlc, origin = excluded.origin, buckets = excluded.buckets, evicted = 0, hash = excluded.hash
         WHERE excluded.version > documents.version OR (documents.evicted = 1 AND excluded.version >= documents.version)`,
      ),
      scoped: db.prepare<[string, string], { version: number; deleted: number; evicted: number; buckets: string | null }>(
        'SELECT version, deleted, evicted, buckets FROM documents WHERE collection = ? AND key = ?',
      ),
      setBuckets: db.prepare<[string, string, string]>('UPDATE documents SET buckets = ? WHERE collection = ? AND key = ?'),
      evict: db.prepare<[number, string, string]>(
        `UPDATE documents SET value = NULL, deleted = 1, evicted = 1, buckets = NULL, hash = NULL, version = max(version, ?)
         WHERE collection = ? AND key = ?`,
      ),
      stub: db.prepare<[string, string, number, string, string]>(
        `INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, evicted) VALUES (?, ?, NULL, 1, ?, ?, ?, 1)`,
      ),
      scopedDocs: db.prepare<[string], { collection: string; key: string; deleted: number; buckets: string | null }>(
        `SELECT collection, key, deleted, buckets FROM documents
         WHERE evicted = 0 AND collection IN (SELECT value FROM json_each(?))`,
      ),
      tag: db.prepare<[string, string, string, number]>(
        'UPDATE documents SET buckets = ? WHERE collection = ? AND key = ? AND version = ? AND evicted = 0',
      ),
      forgetBucket: db.prepare<[string, string]>(
        `UPDATE documents SET buckets = (SELECT json_group_array(value) FROM json_each(documents.buckets) WHERE value <> ?)
         WHERE buckets IS NOT NULL AND evicted = 0 AND EXISTS (SELECT 1 FROM json_each(documents.buckets) WHERE value = ?)`,
      ),
      confirmedKeys: db.prepare<[string, string, number], { key: string }>(
        'SELECT key FROM documents WHERE collection = ? AND key >= ? AND deleted = 0 ORDER BY key LIMIT ?',
      ),
      collections: db.prepare<[], { collection: string }>('SELECT DISTINCT collection FROM documents'),
    };
    this.#digests = new ReplicaDigests(db);
    this.#repair = new RangeRepair(db);
    this.#scrub = new Scrub(db);
  }

  /** The version of a document the replica holds (a tombstone's too); 0 if none. */
  versionOf(collection: string, key: string): number {
    return this.#s.document.get(collection, key)?.version ?? 0;
  }

  /** The document with the device's own pending writes laid over it, or only the confirmed one. */
  read(collection: string, key: string, confirmedOnly = false): AgentDocument | undefined {
    const row = this.#s.document.get(collection, key);
    const version = row?.version ?? 0;
    let value: JsonValue | undefined = row && !row.deleted && row.value ? decodeValue(row.value) : undefined;
    let pending = false;
    if (!confirmedOnly) {
      for (const p of this.outbox.overlayOf(collection, key, version)) {
        pending = true;
        const v = decodeValue(p.value);
        value = p.op === 'del' ? undefined : p.op === 'put' ? v : applyPatch(value, v as { [f: string]: JsonValue });
      }
    }
    return value === undefined ? undefined : { collection, key, value, version, pending };
  }

  /** Documents of a collection in key order: keys starting with `prefix`, after `after`. */
  list(collection: string, options: { prefix?: string; after?: string; limit: number; confirmedOnly?: boolean }): AgentDocument[] {
    const { limit } = options;
    const { from, inRange } = keyRange(options.prefix, options.after);
    const pendingKeys = options.confirmedOnly ? [] : this.outbox.overlayKeys(collection, from);
    // Pending deletes can hide at most that many confirmed documents: fetch enough to fill the page.
    const confirmed = this.#s.confirmedKeys.all(collection, from, limit + pendingKeys.length + 1).map((r) => r.key);
    const keys = [...new Set([...confirmed, ...pendingKeys])].filter(inRange).sort();
    const docs: AgentDocument[] = [];
    for (const key of keys) {
      if (docs.length >= limit) break;
      const doc = this.read(collection, key, options.confirmedOnly);
      if (doc) docs.push(doc);
    }
    return docs;
  }

  /**
   * Applies committed changes of a partition idempotently: a change lands only if its LSN is
   * above the document's version, so replays and overlapping pages are harmless. `watermark`,
   * when given, records that every change of the partition's log up to it has now been seen
   * (the end of a pull page). `heard`: the hub clock of the message that brought them, kept with
   * the cursors and watermark it moves (RestoreWatch reads it). Returns the changes that landed.
   */
  applyChanges(partition: string, changes: readonly Change[], watermark?: number, heard?: string): Change[] {
    return this.db.transaction(() => {
      const applied: Change[] = [];
      const release = this.outbox.anyConfirmed();
      const newest = new Map<string, number>();
      for (const ch of changes) {
        if (this.#applyOne(ch, release)) applied.push(ch);
        if (ch.lsn > (newest.get(ch.c) ?? 0)) newest.set(ch.c, ch.lsn);
      }
      // One cursor update per collection, not per change: the transaction is all or nothing.
      this.collectionCursors.advance(newest, heard);
      if (watermark !== undefined) this.partitions.raiseWatermark(partition, watermark, heard);
      return applied;
    });
  }

  /**
   * Applies one snapshot page of a partition in one transaction, with the progress that lets an
   * interrupted snapshot resume: `next` is the last document received, absent when the snapshot
   * is done — then the replica holds everything up to `lsn`, which becomes the watermark, and so
   * does every replicated collection of the partition (`replicated`, and those the replica holds,
   * that `inPartition` says are the partition's). `heard`: as for applyChanges.
   */
  applySnapshotPage(
    partition: string,
    docs: readonly Change[],
    lsn: number,
    next: readonly [string, string] | undefined,
    replicated?: readonly string[],
    inPartition: (collection: string) => boolean = () => true,
    heard?: string,
  ): Change[] {
    return this.db.transaction(() => {
      const applied: Change[] = [];
      const release = this.outbox.anyConfirmed();
      for (const doc of docs) if (this.#applyOne(doc, release)) applied.push(doc);
      if (next) {
        this.partitions.setSnapshotProgress(partition, { lsn, after: [...next] });
      } else {
        this.partitions.setSnapshotProgress(partition, undefined);
        this.partitions.raiseWatermark(partition, lsn, heard);
        // Complete: every replicated collection of the partition now holds everything up to the
        // snapshot's LSN. The hub reads these cursors for lag and replica acknowledgements.
        const collections = new Set([...(replicated ?? []), ...this.#s.collections.all().map((r) => r.collection)]);
        this.collectionCursors.advance(new Map([...collections].filter(inPartition).map((collection) => [collection, lsn])), heard);
      }
      return applied;
    });
  }

  /**
   * Writes one committed version if it is newer than the replica's; true if it was. `release`:
   * some outbox rows are confirmed and wait for their version to arrive (usually none are).
   * `via`: the bucket's log it came through, whose word on the other buckets held is limited
   * (bucket-membership.ts); a snapshot's document is the bucket now, and its buckets are taken whole.
   */
  #applyOne(ch: Change, release: boolean, via?: Via): boolean {
    // Release the confirmed outbox rows first: on a full database their pages make room for the document.
    if (release) this.outbox.releaseConfirmed(ch.c, ch.k, ch.lsn);
    // Stored as they came: the writer's bytes, which the hub stored, hashed and sent as they are.
    const value = ch.v === undefined ? null : asBuffer(ch.v);
    const bk = ch.bk && via ? vouchedBuckets(ch.bk, via.bucket, ch.lsn, via.held) : ch.bk;
    const buckets = bk === undefined ? null : JSON.stringify(bk);
    // Its hash goes with the row (the digest triggers sum it), of the value bytes as stored.
    const hash = documentHash(ch.c, ch.k, ch.lsn, ch.op === 'del', value);
    if (this.#s.upsert.run(ch.c, ch.k, value, ch.op === 'del' ? 1 : 0, ch.lsn, ch.hlc, ch.o, buckets, hash).changes > 0) return true;
    // The version it holds, sent again (a collection just scoped, a bucket rejoined): it takes the buckets it came with.
    if (ch.bk !== undefined && bk !== undefined) this.#retag(ch, bk);
    return false;
  }

  /**
   * The version the replica holds came again, with its buckets `ch.bk`, of which `vouched` are
   * those its bucket may speak for: the others stay as the replica has them (each says so itself).
   */
  #retag(ch: Change, vouched: readonly string[]): void {
    if (vouched.length === ch.bk!.length) {
      this.#s.tag.run(JSON.stringify(ch.bk), ch.c, ch.k, ch.lsn);
      return;
    }
    const row = this.#s.scoped.get(ch.c, ch.k);
    if (!row || row.version !== ch.lsn || row.evicted) return;
    const stored = row.buckets === null ? [] : (JSON.parse(row.buckets) as string[]);
    const kept = ch.bk!.filter((b) => vouched.includes(b) || stored.includes(b));
    this.#s.setBuckets.run(JSON.stringify(kept), ch.c, ch.k);
  }

  /**
   * A change set or log page of one bucket of the device's scope, in one transaction, and the
   * bucket applied up to `through`. A document that left the bucket (`out`) is evicted unless
   * another bucket the device holds (`held`) still has it.
   */
  applyBucketChanges(
    lane: string,
    bucket: string,
    changes: readonly Change[],
    through: number,
    held: ReadonlyMap<string, HeldBucket>,
  ): BucketApplied {
    return this.db.transaction(() => {
      const result: BucketApplied = { applied: [], evicted: [] };
      const release = this.outbox.anyConfirmed();
      const via = { bucket, held };
      for (const ch of changes) {
        if (ch.op !== 'out') {
          if (this.#applyOne(ch, release, via)) result.applied.push(ch);
        } else if (this.#leave(ch, bucket, held)) {
          result.evicted.push({ collection: ch.c, key: ch.k });
        }
      }
      this.scope.advance(lane, bucket, through);
      return result;
    });
  }

  /**
   * A snapshot page of a bucket the device joins (or whose log no longer reaches its cursor), in
   * one transaction with its progress; once complete (`next` absent) the bucket is applied up to `lsn`.
   * The first page of a snapshot (`fresh`; not one resumed) takes the bucket out of the buckets
   * of every document the replica holds: what the device last heard of it may be stale (a
   * document left it while its log was not followed), and the snapshot names each document in
   * it now, whole or as a tag. What it does not name is then held through the bucket no more.
   */
  applyBucketSnapshot(
    lane: string,
    bucket: string,
    docs: readonly Change[],
    lsn: number,
    next: SnapshotProgress['after'] | undefined,
    fresh: boolean,
  ): Change[] {
    return this.db.transaction(() => {
      const applied: Change[] = [];
      const release = this.outbox.anyConfirmed();
      if (fresh) this.#s.forgetBucket.run(bucket, bucket);
      for (const doc of docs) {
        // A document the device holds at this version, under buckets the hub's rules renamed.
        if (doc.op === 'tag') this.#s.tag.run(JSON.stringify(doc.bk ?? []), doc.c, doc.k, doc.lsn);
        else if (this.#applyOne(doc, release)) applied.push(doc);
      }
      this.scope.setSnapshot(lane, bucket, next && { lsn, after: [...next] });
      if (!next) this.scope.advance(lane, bucket, lsn);
      return applied;
    });
  }

  /**
   * The device now holds the buckets `held` of the scoped collections `scoped` (one lane's): the documents
   * of those collections it holds through none of them are evicted, stubs keeping their versions
   * (one of a collection that was not scoped when it arrived has no buckets: it is evicted too,
   * unless a join tagged it since). Only once no bucket is being joined: a join may yet tag what
   * the device holds under buckets the hub's rules renamed.
   */
  evictOutside(held: ReadonlySet<string>, scoped: readonly string[]): EvictedDocument[] {
    return this.db.transaction(() => {
      const evicted: EvictedDocument[] = [];
      for (const doc of this.#s.scopedDocs.all(JSON.stringify(scoped))) {
        if (doc.buckets !== null && (JSON.parse(doc.buckets) as string[]).some((b) => held.has(b))) continue;
        this.#s.evict.run(0, doc.collection, doc.key);
        if (!doc.deleted) evicted.push({ collection: doc.collection, key: doc.key });
      }
      return evicted;
    });
  }

  /**
   * A document left `bucket` at `ch.lsn`. If the replica holds that version, its own buckets say
   * whether the device still holds it (through a bucket it follows); if an older one, the buckets
   * it had but this one say whether another bucket of the device will bring the change (then it
   * stays until it does). Otherwise it is evicted, as a stub at that version, so no older change
   * brings it back (a bucket being joined that has it brings it again, at a version as new).
   * True if a document the app could read was evicted.
   */
  #leave(ch: Change, bucket: string, held: ReadonlyMap<string, HeldBucket>): boolean {
    const row = this.#s.scoped.get(ch.c, ch.k);
    if (!row) {
      this.#s.stub.run(ch.c, ch.k, ch.lsn, ch.hlc, ch.o);
      return false;
    }
    if (row.version > ch.lsn || row.evicted) return false;
    const stored = row.buckets === null ? [] : (JSON.parse(row.buckets) as string[]);
    const remaining = bucketsAfterLeaving(stored, bucket, row.version, ch.lsn, held);
    if (remaining.some((b) => held.has(b))) {
      if (row.version < ch.lsn) this.#s.setBuckets.run(JSON.stringify(remaining), ch.c, ch.k);
      return false;
    }
    this.#s.evict.run(ch.lsn, ch.c, ch.k);
    return !row.deleted;
  }

  /** Highest LSN applied for a collection (0 if none). */
  cursor(collection: string): number {
    return this.collectionCursors.of(collection);
  }

  /** Highest LSN applied, per collection. */
  cursors(): Record<string, number> {
    return this.collectionCursors.all();
  }

  /** The collection's content digest (shared/digest.ts), as the hub computes it over what it holds; 0 when none. */
  digest(collection: string): number {
    return this.#digests.digest(collection);
  }

  /** The collection's documents summed into the `2^bits` sub-ranges of each of `parents` (ReplicaDigests). */
  rangeDigests(collection: string, depth: number, parents: readonly number[], bits: number): RangeDigests {
    return this.#digests.rangeDigests(collection, depth, parents, bits);
  }

  /** One page of the hub's documents of some key ranges, written as the hub has them (RangeRepair). */
  repairRanges(
    collection: string,
    depth: number,
    ranges: readonly number[],
    docs: readonly Change[],
    window: KeyWindow,
    lsn: number,
  ): RangeRepaired {
    return this.#repair.repair(collection, depth, ranges, docs, window, lsn);
  }

  /** Sets the collection's digest to the sum of its documents' stored hashes, and returns it. */
  recountDigest(collection: string): number {
    return this.#digests.recountDigest(collection);
  }

  /** Reads about `maxBytes` of rows after `after` and reports those that rotted (Scrub); writes nothing. */
  scrub(after: readonly [string, string] | undefined, maxBytes: number): ScrubStep {
    return this.#scrub.step(after, maxBytes);
  }
}

/** A page's keys: those starting with `prefix`, after `after`; `from` is where to start reading them in key order. */
export function keyRange(prefix = '', after?: string): { from: string; inRange: (key: string) => boolean } {
  return {
    from: after !== undefined && after > prefix ? after : prefix,
    inRange: (key) => key.startsWith(prefix) && (after === undefined || key > after),
  };
}
