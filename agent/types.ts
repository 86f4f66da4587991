import type { Logger } from 'pino';
import type { Change } from '../shared/messages.js';
import type { Durability } from './durability.js';
import type { SyncSchedule } from './scheduler.js';
import type { ScrubStatus } from './scrubber.js';
import type { VerificationView } from '../shared/verification-view.js';
import type { MovedWrite } from './store/outbox.js';
import type { Rejection } from './store/rejections.js';
import type { EvictedDocument } from './store/replica.js';
import type { TransportFactory } from './transport.js';
import type { BudgetPeriod, TransferBudgetOptions } from './transfer-budget.js';
import type { JsonValue } from '../shared/values.js';

/** A committed change as the app hears it: its value decoded (when first read, see applied-changes.ts). */
export type AppliedChange = Omit<Change, 'v'> & { readonly v?: JsonValue };

/** The agent's public types: options, status, read and write options, events. */
export interface AgentOptions {
  /**
   * e.g. `mqtt://hub.example.com:1883`. Several, comma-separated, for hub processes that take
   * over from one another (failover with the embedded broker): the agent keeps to one while it
   * answers and tries the next when it does not.
   */
  hubUrl: string;
  agentId: string;
  /** The token `outpost hub agents add` printed for this agent; omitted only for a hub in --dev mode. */
  hubToken?: string;
  /** For `mqtts://`: the CA that signed the hub's certificate, and for mutual TLS this agent's certificate and key. */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  dataDir: string;
  /** Collections to replicate locally; omitted = every collection. */
  collections?: string[];
  logger?: Logger;
  /** Wall clock in ms; injectable for tests of skewed devices. */
  now?: () => number;
  reconnect?: { initialMs: number; maxMs: number };
  ackTimeoutMs?: number;
  /** Cap on the agent database's size (the device's disk budget); writes past it fail with OUTPOST_STORAGE_FULL. */
  storageLimitBytes?: number;
  /** The connection to the hub; default MQTT to `hubUrl`. Tests put a simulated network here. */
  transport?: TransportFactory;
  /** Changes (or snapshot documents) per pull page; default limits.maxPullPage (1,000), the most a hub sends. */
  pageLimit?: number;
  /** How long a write waits for `hub` or `replicas` durability, and a read for `minLsn` (default 10 s). */
  waitTimeoutMs?: number;
  /** When to talk to the hub; default realtime. */
  sync?: SyncSchedule;
  /** How often a quiet device compares its copy with the hub's digests (default 60 s); change sets and pages compare as they apply. */
  verifyIntervalMs?: number;
  /**
   * A transfer budget for a metered link (agent/transfer-budget.ts): bytes per UTC day and/or month.
   * Alarms (high-priority collections) always go; other writes and pulls wait once it is spent;
   * blobs wait from 80 % of it. `now`: the wall clock its periods follow (injectable for tests).
   */
  transferBudget?: TransferBudgetOptions & { now?: () => number };
  /** Blob content (agent/blobs/): bytes the device keeps (default 256 MiB), the largest a put takes (default 1 GiB). */
  blobs?: { cacheBytes?: number; maxBlobBytes?: number };
  /** Bytes of stored rows the scrub re-reads a minute to find rot (default 4 MiB; 0 turns it off). */
  scrubBytesPerMinute?: number;
}

export interface AgentStatus {
  agentId: string;
  incarnation: string;
  connected: boolean;
  /** Writes in the outbox not yet acknowledged by the hub. */
  outboxDepth: number;
  /** A pull from the hub is under way or due (after a (re)connect, or a gap in change sets). */
  catchingUp: boolean;
  /** Highest LSN applied to the local replica. */
  appliedLsn: number;
  /** Every change up to this LSN (of the replicated collections) is applied. */
  watermark: number;
  /**
   * Per collection: applied LSN; lag, in changes, behind the newest LSN heard of from the hub
   * this run (unknown while offline: changes committed meanwhile are not counted); writes
   * waiting to be uploaded and the age of the oldest.
   */
  collections: Record<string, { appliedLsn: number; lag: number; pending: number; oldestPendingAgeMs?: number }>;
  /**
   * Per partition of the hub other than the default one (when it has them): the sequence space
   * of this device's writes there, and how far its log is applied (`appliedLsn` and `watermark`
   * as above, in that partition's LSNs; the fields above are the default partition's).
   */
  partitions?: Record<string, { incarnation: string; appliedLsn: number; watermark: number }>;
  /**
   * Present while a restore of the hub is being reconciled: lost versions this device holds that
   * the hub has not yet acknowledged (see docs/OPERATIONS.md), in total and per partition.
   */
  restore?: { lostPending: number; partitions: Record<string, number> };
  /**
   * The device's scope, when the hub scopes collections: each bucket it holds with the LSN its
   * changes are applied up to (-1 while it is joining: its snapshot is under way), and how many
   * buckets are behind the newest change heard of (or still joining).
   */
  scope?: { buckets: Record<string, number>; behind: number };
  /** Verifying this device's copy against the hub's digests, and repairing it (see AgentVerification). */
  verification: AgentVerification;
  /** When the last sync window or sync-now finished with everything uploaded and caught up. */
  lastSyncAt?: string;
  /** When the next sync window opens (sync windows only). */
  nextWindow?: string;
  /**
   * Blobs (agent/blobs/): written here and waiting for the hub to hold their content (the one
   * uploading now, and the chunks the hub still lacks of it); downloads waiting or under way;
   * the content the device holds against its cache budget.
   */
  blobs?: BlobStatus;
  /**
   * With a transfer budget: each period's spend against it, and what waits for lack of it (writes
   * other than alarms, blob uploads). Absent without one.
   */
  budget?: { periods: BudgetPeriod[]; waiting: { documents: number; blobs: number } };
}

export interface BlobStatus {
  uploads: { blobs: number; bytes: number; current?: { collection: string; key: string; missingChunks: number } };
  downloads: { blobs: number; bytes: number };
  cache: { bytes: number; budget: number };
}

/** What verifying the device's copy has done (shared/verification-view.ts), the collections under repair, and the scrub's progress. */
export interface AgentVerification extends VerificationView {
  repairing: string[];
  scrub: ScrubStatus;
}

export interface WriteOptions {
  /** Default: the collection's durability as declared at the hub, else `local`. */
  durability?: Durability;
  /** How long to wait for that durability (the write stays queued after a timeout). */
  timeoutMs?: number;
  /**
   * The version this write is made against (HTTP `If-Match`). By default the version in the
   * local replica. Collections with the `reject` policy refuse the write if another device
   * committed a newer version first.
   */
  ifVersion?: number;
}

export interface ReadOptions {
  /** Skip this device's pending writes and show only what the hub confirmed. */
  confirmed?: boolean;
  /**
   * Wait until this device has applied every change of the collection up to this LSN (a causal
   * token: the LSN a writer elsewhere got back from a `hub`-durable write).
   */
  minLsn?: number;
  timeoutMs?: number;
}

export interface ListOptions extends ReadOptions {
  prefix?: string;
  after?: string;
  limit?: number;
}

export interface AgentEvents {
  /** Committed changes applied to the local replica. */
  change: [AppliedChange[]];
  /**
   * Documents that left this device's scope (a field of theirs, its labels or the hub's rules
   * changed): no longer held here, though they live on at the hub and on other devices.
   */
  evicted: [EvictedDocument[]];
  /**
   * A repair of the device's copy of a collection rewrote documents as the hub has them (`written`,
   * as changes) and removed documents the hub does not have (`removed`).
   */
  repaired: [info: { collection: string; written: AppliedChange[]; removed: EvictedDocument[] }];
  /** Writes the hub refused or that lost a conflict; also kept in `rejections()`. */
  rejection: [Rejection[]];
  connected: [];
  disconnected: [];
  /** A sync window opened (true) or closed (false). */
  window: [open: boolean];
  /**
   * Writes made before the agent first heard how the hub partitions its collections, to a
   * collection of another partition than the default, moved to that partition's sequence: a
   * receipt already returned for one names `from`; the write is now `to`. (A write still waiting
   * for `hub` or `replicas` durability resolves with `to`.)
   */
  moved: [MovedWrite[]];
  /** The hub found this database's seqs already used (an old backup was restored): the queue was renumbered. */
  reincarnated: [previous: string, next: string];
  /**
   * A partition's hub was restored from a backup: versions above `fork` were taken out of the
   * replica (and writes acknowledged above it out of the outbox), are being reported to the hub,
   * and the partition is pulled again; pending writes go up under a new incarnation.
   */
  restored: [info: { partition: string; lineage: string; fork: number; lostDocuments: number; lostWrites: number }];
}
