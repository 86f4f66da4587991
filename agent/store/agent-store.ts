import { DEFAULT_PARTITION } from '../../shared/topics.js';
import { AgentDb } from './agent-db.js';
import { BlobCacheIndex } from './blob-cache-index.js';
import { BlobUploads } from './blob-uploads.js';
import { BucketDigests } from './bucket-digests.js';
import { BucketRepair } from './bucket-repair.js';
import { CollectionCursors } from './collection-cursors.js';
import { backfillHashes } from './hash-backfill.js';
import { LostReports } from './lost-reports.js';
import { Outbox } from './outbox.js';
import { Partitions } from './partitions.js';
import { Rejections } from './rejections.js';
import { Replica } from './replica.js';
import { ScopeBuckets } from './scope-buckets.js';
import { Settings } from './settings.js';

/**
 * The agent's SQLite database (agent.db in the data directory), by job, over one connection:
 * the durable outbox of the device's own writes, the confirmed replica that reads lay them
 * over, the per-partition sequence spaces and log positions, the rejections apps can read, and
 * settings with the storage budget, what a restored hub lost (until the hub has it), and the
 * buckets of the device's scope with their digests and repair. Every method of every part is synchronous; a method that
 * writes does so in one transaction of its own.
 */
export class AgentStore {
  readonly settings: Settings;
  readonly partitions: Partitions;
  readonly rejections: Rejections;
  readonly outbox: Outbox;
  readonly replica: Replica;
  readonly scope: ScopeBuckets;
  /** The replica's digests per scope bucket, and putting a bucket's key ranges back as the hub has them. */
  readonly bucketDigests: BucketDigests;
  readonly bucketRepair: BucketRepair;
  readonly lost: LostReports;
  /** Blobs written here whose content the hub does not hold yet, and the content the device holds. */
  readonly blobUploads: BlobUploads;
  readonly blobCache: BlobCacheIndex;
  readonly #db: AgentDb;
  readonly #cursors: CollectionCursors;

  constructor(dataDir: string) {
    this.#db = new AgentDb(dataDir);
    backfillHashes(this.#db); // documents stored before the replica kept hashes (schema 9)
    this.settings = new Settings(this.#db);
    this.partitions = new Partitions(this.#db);
    this.rejections = new Rejections(this.#db);
    this.outbox = new Outbox(this.#db, this.partitions, this.settings, this.rejections, (c, k) => this.replica.versionOf(c, k));
    this.scope = new ScopeBuckets(this.#db);
    this.#cursors = new CollectionCursors(this.#db);
    this.replica = new Replica(this.#db, this.outbox, this.partitions, this.scope, this.#cursors);
    this.bucketDigests = new BucketDigests(this.#db);
    this.bucketRepair = new BucketRepair(this.#db, this.scope);
    this.lost = new LostReports(this.#db, this.partitions, this.outbox, this.#cursors);
    this.blobUploads = new BlobUploads(this.#db, this.rejections, this.partitions);
    this.blobCache = new BlobCacheIndex(this.#db);
    this.partitions.incarnationOf(DEFAULT_PARTITION); // a new database is born with its default incarnation
  }

  /** Makes every commit so far survive a power cut (most are not fsynced: see AgentDb). */
  flush(): void {
    this.#db.flush();
  }

  close(): void {
    try {
      this.outbox.settleReleased();
    } finally {
      this.#db.close();
    }
  }
}
