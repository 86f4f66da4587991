import type { Logger } from 'pino';
import { broadcastCodec, downCodec, upCodec } from '../shared/codec.js';
import type { HybridClock, Hlc } from '../shared/hlc.js';
import type { BlobDownMessage, BudgetMessage, Change, DownMessage, HubStatusMessage, UpMessage } from '../shared/messages.js';
import { partitionTopics, type PartitionTopics } from '../shared/topics.js';
import { DurabilityWaiters, type Durability, type ReplicaWaitReport, type WriteIdentity } from './durability.js';
import { Replicator } from './replicator.js';
import { RestoreWatch } from './restore-watch.js';
import { ScopeSync } from './scope-sync.js';
import type { EvictedDocument } from './store/replica.js';
import { EpochGuard } from './epoch-guard.js';
import type { AgentStore } from './store/agent-store.js';
import type { Rejection } from './store/rejections.js';
import { Uploader } from './uploader.js';
import type { VerificationBook } from './verification-book.js';
import { Verifier } from './verifier.js';

export interface LaneOptions {
  /** Collections replicated on this device (of every partition); undefined = all. */
  collections: readonly string[] | undefined;
  pageLimit: number;
  ackTimeoutMs: number;
  /** Where verification's findings are kept (one book for every lane). */
  verification: VerificationBook;
  verifyIntervalMs: number;
}

export interface LaneDelegate {
  /** Publishes on the hub's broker; false when not connected. */
  publish(topic: string, payload: Buffer): boolean;
  connected(): boolean;
  /** The current connection's id (see Transport.session). */
  session(): string;
  /** How far uploads of a partition may go now: all, none (sync windows; no assignment yet) or up to a seq (budget spent: alarms). */
  mayUpload(partition: string): boolean | number;
  /** Pulling is allowed now: the hub's assignment of partitions is known, and the transfer budget allows documents. */
  mayPull(): boolean;
  onApplied(changes: Change[]): void;
  /** Documents left the device's scope: it no longer holds them. */
  onEvicted(documents: EvictedDocument[]): void;
  /** A repair of the device's copy rewrote these documents as the hub has them, and removed those the hub does not have. */
  onRepaired(collection: string, written: Change[], removed: EvictedDocument[]): void;
  onProgress(): void;
  onRejected(rejections: Rejection[]): void;
  onReincarnated(previous: string, next: string): void;
  /** The partition's hub was restored from a backup and the partition reconciled (see RestoreWatch). */
  onRestored(info: { partition: string; lineage: string; fork: number; lostDocuments: number; lostWrites: number }): void;
  /** A hub status arrived on this lane's hub topic (from a leader this lane still listens to). */
  onHubStatus(status: HubStatusMessage[1]): void;
  /** What the hub says to the device as a whole: about blob content (agent/blobs/), its transfer budget. */
  onDeviceMessage(message: BlobDownMessage | BudgetMessage): void;
}

/**
 * The agent's sync with one partition of the hub: its own topics, outbox sequence space
 * (uploader), log position (replicator), durability waits and leadership epoch. Each partition
 * is a separate log led by its own hub process, so one lane's failover or resync never holds
 * up another. Without partitions an agent has one lane, the default partition's.
 */
export class Lane {
  readonly topics: PartitionTopics;
  readonly #uploader: Uploader;
  readonly #replicator: Replicator;
  readonly #scope: ScopeSync;
  readonly #durability: DurabilityWaiters;
  readonly #restore: RestoreWatch;
  readonly #epochs: EpochGuard;
  readonly verifier: Verifier;
  /**
   * This lane's topics are subscribed on the connection (or will be, before it counts as connected). A lane added while
   * connected waits for its SUBACK before it uploads: an ack published before the broker knows the subscription would be lost.
   */
  #subscribed = true;
  /** A hub status came since this connection was made (the first is the retained one). */
  #statusSinceConnect = false;

  constructor(
    readonly partition: string,
    readonly agentId: string,
    private readonly store: AgentStore,
    private readonly clock: HybridClock,
    /** Whether a collection belongs to this lane's partition, by the hub's assignment as known now. */
    readonly inPartition: (collection: string) => boolean,
    options: LaneOptions,
    private readonly delegate: LaneDelegate,
    private readonly log: Logger,
  ) {
    this.topics = partitionTopics(partition);
    // A new leader: acks for batches the old one took are lost; resend them now, not after the ack timeout.
    this.#epochs = new EpochGuard(partition, store.settings, () => this.#resend(), log);
    this.#durability = new DurabilityWaiters(() => delegate.connected());
    this.#uploader = new Uploader(
      store,
      {
        send: (batch) => this.send(batch),
        mayUpload: () => this.#subscribed && delegate.mayUpload(partition),
        isReplicated: (c) => this.#replicator.replicates(c),
        onAcked: (results) => this.#durability.onResults(results),
        onRejected: (rejections) => delegate.onRejected(rejections),
      },
      { partition, maxBatchOps: 500, maxBatchBytes: 256 * 1024, maxInFlight: 4, ackTimeoutMs: options.ackTimeoutMs },
      log,
    );
    this.#replicator = new Replicator(
      store,
      {
        send: (pull) => this.send(pull),
        onApplied: (changes) => delegate.onApplied(changes),
        onProgress: () => delegate.onProgress(),
        verify: (c, lsn, digest) => this.verifier.check(c, lsn, digest, 'hole'),
      },
      {
        partition,
        inPartition,
        mayPull: () => delegate.mayPull(),
        collections: options.collections,
        pageLimit: options.pageLimit,
        pullTimeoutMs: options.ackTimeoutMs,
      },
      log,
    );
    this.#scope = new ScopeSync(
      store,
      {
        send: (pull) => this.send(pull),
        onApplied: (changes) => delegate.onApplied(changes),
        onEvicted: (documents) => delegate.onEvicted(documents),
        onProgress: () => delegate.onProgress(),
        verify: (bucket, c, lsn, digest) => this.verifier.checkBucket(bucket, c, lsn, digest),
      },
      { lane: partition, pageLimit: options.pageLimit, pullTimeoutMs: options.ackTimeoutMs },
      log,
    );
    this.verifier = new Verifier(
      store,
      options.verification,
      {
        send: (message) => this.send(message),
        onRepaired: (collection, written, removed) => delegate.onRepaired(collection, written, removed),
        requestStatus: () => delegate.onProgress(),
      },
      {
        partition,
        verifiable: (c) => this.#replicator.replicates(c) && !this.#scope.scoped(c),
        ...this.#scope.verifierView(),
        verifyIntervalMs: options.verifyIntervalMs,
        answerTimeoutMs: options.ackTimeoutMs,
      },
      log,
    );
    this.#restore = new RestoreWatch(
      store,
      partition,
      agentId,
      inPartition,
      { send: (message) => this.send(message), connected: () => delegate.connected() && this.#subscribed },
      { ackTimeoutMs: options.ackTimeoutMs },
      log,
    );
  }

  /** Lost documents this lane still has to report to its restored hub. */
  get lostPending(): number {
    return this.#restore.pending;
  }

  /** What this lane listens to: its down topic, its hub status, and its collections' change sets. */
  subscriptions(collections: readonly string[] | undefined): string[] {
    const wanted =
      collections === undefined
        ? [this.topics.allCollections]
        : collections.filter((c) => this.inPartition(c)).map((c) => this.topics.collection(c));
    return [this.topics.down(this.agentId), this.topics.hub, this.topics.allBlobs, ...wanted];
  }

  /** A lane added while connected: nothing goes up until `onSubscribed` (its SUBACK). */
  holdUntilSubscribed(): void {
    this.#subscribed = false;
  }

  onSubscribed(): void {
    this.#subscribed = true;
  }

  /** Uploads what this lane's outbox holds, as far as the window allows. */
  pump(): void {
    this.#uploader.pump();
  }

  /** Catches up on the partition's log from the watermark (or once the pull under way ends). */
  pull(): void {
    this.#replicator.pull();
  }

  /** A pull is under way, or asked for (of the partition's log or of a bucket of the device's scope). */
  get pulling(): boolean {
    return this.#replicator.pulling || this.#scope.pulling;
  }

  /** A batch of writes waits for its ack. */
  get uploading(): boolean {
    return this.#uploader.busy;
  }

  /** Every change of the partition's replicated collections up to this LSN (of its log) is applied. */
  get watermark(): number {
    return this.#replicator.watermark;
  }

  /** The newest LSN heard of for a collection this run (applied or not); 0 if none. */
  headOf(collection: string): number {
    return this.#replicator.heads.get(collection) ?? 0;
  }

  /** The newest LSN heard of per bucket of the device's scope this run. */
  get bucketHeads(): ReadonlyMap<string, number> {
    return this.#scope.heads;
  }

  /** Resolves with the write's LSN once it reaches `durability` (see DurabilityWaiters.wait). */
  waitFor(
    seq: number,
    collection: string,
    durability: Exclude<Durability, 'local'>,
    timeoutMs: number,
    renamed?: (identity: WriteIdentity) => void,
  ): Promise<number | undefined> {
    return this.#durability.wait(seq, collection, durability, timeoutMs, renamed);
  }

  /** This lane's committed writes still waiting for replicas, for the status report (see DurabilityWaiters.replicaWaits). */
  replicaWaits(): ReplicaWaitReport[] {
    return this.#durability.replicaWaits();
  }

  /** A write of this lane moved to `to` (Outbox.adoptAssignment) as `identity`: its wait goes along. */
  handOverWait(seq: number, to: Lane, identity: WriteIdentity): void {
    this.#durability.moveTo(seq, to.#durability, identity);
  }

  send(message: UpMessage): boolean {
    return this.delegate.publish(this.topics.up(this.agentId), upCodec.encode(message));
  }

  start(): void {
    this.#uploader.start();
    this.#restore.start();
    this.verifier.start();
  }

  onConnected(): void {
    // First: the hub then tells this device its scope and sends it its buckets' change sets.
    this.#statusSinceConnect = false;
    this.#sayHello();
    this.#resend();
    this.#replicator.onConnected();
    this.#scope.onConnected();
    this.#restore.onConnected();
    this.verifier.onConnected();
  }

  onDisconnected(): void {
    this.#uploader.reset();
    this.#replicator.onDisconnected();
    this.#scope.onDisconnected();
    this.#restore.onDisconnected();
  }

  stop(): void {
    this.verifier.stop();
    this.#restore.stop();
    this.#durability.close();
    this.#uploader.stop();
    this.#replicator.stop();
    this.#scope.stop();
  }

  /** Handles a message on one of this lane's topics; one on any other topic is ignored. */
  onMessage(topic: string, payload: Buffer): void {
    if (topic === this.topics.down(this.agentId) || this.topics.hashOfBlob(topic) !== undefined) {
      const message = downCodec.decode(payload);
      if (message[0] !== 'error' && this.#epochs.isDeposed(message[0], message[1].epoch)) return;
      this.#onDown(message, payload.length);
      return;
    }
    if (topic !== this.topics.hub && this.topics.collectionOf(topic) === undefined) return;
    const message = broadcastCodec.decode(payload);
    if (this.#epochs.isDeposed(message[0], message[1].epoch)) return;
    this.clock.observe(message[1].hlc as Hlc);
    if (message[0] === 'hub') this.#checkRestored(message[1]);
    if (message[0] === 'changes') {
      this.#replicator.onChanges(message);
      return;
    }
    this.delegate.onHubStatus(message[1]);
    // A hub status other than the retained one at connect: a hub process (re)started or took over,
    // behind a broker this device stayed connected to. It does not know this device is online.
    if (this.#statusSinceConnect) {
      this.#scope.onHubRestarted();
      this.#sayHello();
    }
    this.#statusSinceConnect = true;
    // A hub (re)started or took over: change sets it committed but never published (it died
    // first) are found only by pulling, and a quiet collection would not reveal them.
    if (message[1].head > this.#replicator.watermark) this.#replicator.pull();
  }

  #sayHello(): void {
    this.send(['hello', { s: this.delegate.session() }]);
  }

  /** Uploads again what waits for an ack: the hub that took it will not answer (it was replaced, or renumbered the queue). */
  #resend(): void {
    this.#uploader.reset();
    this.#uploader.pump();
  }

  /** A restored hub: the partition is reconciled, its queue resent under the new incarnation, its log pulled from 0, its buckets joined again. */
  #checkRestored(status: HubStatusMessage[1]): void {
    const reconciled = this.#restore.onHubStatus(status);
    if (!reconciled) return;
    const { incarnation, renumbered } = reconciled;
    this.#durability.abandonAcknowledged('the hub was restored from a backup');
    for (const { from, to } of renumbered)
      this.#durability.moveTo(from, this.#durability, { partition: this.partition, incarnation, seq: to });
    this.delegate.onRestored({
      partition: this.partition,
      lineage: status.lin,
      fork: reconciled.fork,
      lostDocuments: reconciled.documents,
      lostWrites: reconciled.writes,
    });
    this.#resend();
    this.#replicator.restart();
    this.#scope.onRestored();
    this.#restore.pump();
  }

  #onDown(message: DownMessage, bytes: number): void {
    // Every hub message but an error carries the hub's clock: advance past it.
    if (message[0] !== 'error') this.clock.observe(message[1].hlc as Hlc);
    switch (message[0]) {
      case 'ack':
        this.#uploader.onAck(message);
        break;
      case 'resync':
        this.#uploader.onResync(message);
        break;
      case 'page':
        if (message[1].b !== undefined) this.#scope.onPage(message);
        else this.#replicator.onPage(message);
        break;
      case 'snapshot':
        if (message[1].b !== undefined) this.#scope.onSnapshot(message);
        else this.#replicator.onSnapshot(message);
        break;
      case 'scope':
        this.#scope.onScope(message);
        break;
      case 'changes':
        if (message[1].b !== undefined) this.#scope.onChanges(message);
        break;
      case 'replicated':
        if (message[1].inc === this.store.partitions.incarnationOf(this.partition)) this.#durability.onReplicated(message[1].seqs);
        break;
      case 'reincarnate': {
        if (message[1].inc !== this.store.partitions.incarnationOf(this.partition)) break;
        const previous = message[1].inc;
        const { incarnation: next, renumbered } = this.store.outbox.reincarnate(this.partition);
        this.#durability.abandonAcknowledged("the hub reported this database's seqs reused");
        // Waits follow their writes to the new numbers; in order, each moves down into a seq already vacated.
        for (const { from, to } of renumbered)
          this.#durability.moveTo(from, this.#durability, { partition: this.partition, incarnation: next, seq: to });
        this.log.warn(
          { partition: this.partition, previous, next, seq: message[1].seq },
          "the hub holds other writes under this database's sequence numbers (restored from a backup?); resending the queue under a new incarnation",
        );
        this.delegate.onReincarnated(previous, next);
        this.#resend();
        break;
      }
      case 'lostack':
        this.#restore.onAck(message[1].id);
        break;
      default: // blob content, the transfer budget
        this.delegate.onDeviceMessage(message);
        break;
      case 'digests':
      case 'rangesums':
      case 'refetched':
        this.verifier.onMessage(message, bytes);
        break;
      case 'error':
        // A bucket pull refused as out of scope needs nothing more: the hub sends the scope that
        // replaced it, which settles that pull (an error does not say which pull it answers).
        this.log.error({ partition: this.partition, code: message[1].code }, `hub reported: ${message[1].message}`);
        break;
    }
  }
}
