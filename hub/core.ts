import { EventEmitter } from 'node:events';
import pino, { type Logger } from 'pino';
import { newOutcomes } from '../shared/acks.js';
import { broadcastCodec, downCodec, upCodec } from '../shared/codec.js';
import { ErrorCode, OutpostError } from '../shared/errors.js';
import { HybridClock } from '../shared/hlc.js';
import type { BroadcastMessage, DownMessage, StatusMessage } from '../shared/messages.js';
import { DEFAULT_PARTITION, partitionTopics, type PartitionTopics } from '../shared/topics.js';
import { AccessControl } from './access.js';
import { Committer } from './committer.js';
import { AgentPulls } from './agent-pulls.js';
import type { HubCoreOptions, HubEvents } from './core-options.js';
import { VerifyAnswers } from './verify-answers.js';
import { hubStatus } from './hub-status.js';
import { declaredBudget } from './budgets.js';
import { assignment, collectionsOfPartition, CollectionPolicies, DEFAULT_HUB_CONFIG, scopeRules, type HubConfig } from './config.js';
import { ScopeDelivery } from './scope-delivery.js';
import { reindexScopes } from './scope-reindex.js';
import { ScopeDirectory } from './scope-directory.js';
import { scopeView, type ScopeRules } from './scope-rules.js';
import {
  defaultIngestOptions,
  Ingestor,
  type HubWriteRequest,
  type IngestOutput,
  type ReapplyRequest,
  type WriteResult,
} from './ingest.js';
import { recordLostReport } from './lost-reports.js';
import { LogRetention } from './log-retention.js';
import { BlobCollector } from './blob-collector.js';
import { KnownCollections } from './known-collections.js';
import { PacedQueue, type Pace } from './paced-queue.js';
import { RefusedWorkLog } from './refused-work.js';
import { BlobIntake } from './blob-intake.js';
import { ReplicaAcks } from './replica-acks.js';
import type { ReplicationTracker } from './replication-tracker.js';
import type { HubStore } from './store/hub-store.js';
import { WriterRefusedError } from './store/writer-errors.js';

export { DEFAULT_PULL_BYTES_PER_SECOND } from './agent-pulls.js';
export type { HubCoreOptions, HubEvents } from './core-options.js';

/**
 * Status reports taken per agent per second (as many saved up): an agent sends at most one each
 * 50 ms, so an honest one is never held back; the newest of a flood is taken, the rest replaced.
 */
const STATUS_PACE: Pace = { rate: 20, burst: 20 };

/**
 * The hub's protocol, without the transport: decodes what agents send on their `up` topics,
 * group-commits batches and hub writes, answers pulls, acknowledges after commit, publishes
 * committed change sets and tracks replica acknowledgements. The embedded-broker `Hub` and
 * any other carrier feed it `onUp` and give it `publish`.
 */
export class HubCore extends EventEmitter<HubEvents> {
  readonly store: HubStore;
  /**
   * Stamped on every message but errors when this hub leads by election: agents ignore a deposed
   * leader's lower epoch. A hub without failover stamps none, and agents then do not compare.
   */
  readonly epoch: number | undefined;
  readonly clock = new HybridClock();
  readonly log: Logger;
  readonly config: HubConfig;
  readonly policies: CollectionPolicies;
  /** What agents' status reports may name (see KnownCollections). */
  readonly #collections: KnownCollections;
  readonly #replicaAcks: ReplicaAcks;
  readonly #pulls: AgentPulls;
  readonly #statuses: PacedQueue<StatusMessage[1]>;
  readonly #verify: VerifyAnswers;
  readonly access: AccessControl;
  /** The partition this core is the log of. */
  readonly partition: string;
  /** That partition's topics, which everything this core publishes goes to. */
  readonly topics: PartitionTopics;
  readonly #committer: Committer;
  readonly #partitionOf: (collection: string) => string;
  readonly #publish: HubCoreOptions['publish'];
  readonly #retention: LogRetention;
  readonly #blobs: BlobCollector;
  readonly #blobTraffic: BlobIntake; // blob content devices upload and fetch over MQTT
  /** Scoped collections' delivery: which devices are online, and what each holds (see ScopeDelivery). */
  readonly scopes: ScopeDelivery;
  /** The scope rules of this partition's collections. */
  readonly #scopeRules: ScopeRules;

  constructor(options: HubCoreOptions) {
    super();
    this.log = options.logger ?? pino({ level: 'silent' });
    this.config = options.config ?? DEFAULT_HUB_CONFIG;
    this.policies = new CollectionPolicies(this.config);
    const refusals = new RefusedWorkLog(this.log);
    this.on('refused', (kind, agentId, count) => refusals.record(kind, agentId, count));
    this.#collections = new KnownCollections(Object.keys(this.config.collections));
    this.access = new AccessControl(this.config.access, options.dev ?? false);
    this.#statuses = new PacedQueue(
      async (agentId, status) => {
        this.#replicaAcks.report(agentId, status);
        if (status.v || status.vb) await this.#verify.answerStatus(agentId, status);
        return 1;
      },
      STATUS_PACE,
      (agentId) => this.emit('refused', 'status_superseded', agentId, 1),
    );
    this.#publish = options.publish;
    this.store = options.store;
    this.#retention = new LogRetention(this.store, this.config.retention, this.log);
    this.#blobs = new BlobCollector(this.store, this.log);
    this.epoch = options.epoch;
    this.partition = options.partition ?? DEFAULT_PARTITION;
    this.topics = partitionTopics(this.partition);
    const owners = new Map(Object.entries(assignment(this.config)));
    this.#partitionOf = (collection) => owners.get(collection) ?? DEFAULT_PARTITION;
    const rules = (this.#scopeRules = scopeRules(collectionsOfPartition(this.config, this.partition)));
    const labelsOf = options.labelsOf ?? (() => ({}));
    this.scopes = new ScopeDelivery(
      new ScopeDirectory(rules, this.config.access.groups, labelsOf, (agentId, c) => this.access.mayRead(agentId, c)),
      { store: this.store, clock: this.clock, epoch: this.epoch, log: this.log },
      {
        sendScope: (agentId, message) => this.#sendDown(agentId, message),
        sendEncoded: (agentId, payload) => this.#sendPayload(this.topics.down(agentId), payload, false),
        superseded: (agentId) => this.emit('refused', 'hello_superseded', agentId, 1),
      },
    );
    this.#replicaAcks = new ReplicaAcks({
      store: this.store,
      collections: this.#collections,
      access: this.access,
      scopes: this.scopes.directory,
      replicated: (agentId, inc, seqs) => this.#sendDown(agentId, ['replicated', { inc, hlc: this.clock.tick(), seqs }]),
      refused: (kind, agentId, count) => this.emit('refused', kind, agentId, count),
      log: this.log,
    });
    this.#pulls = new AgentPulls(
      {
        store: this.store,
        clock: this.clock,
        scopes: this.scopes.directory,
        mayRead: (agentId, c) => this.access.mayRead(agentId, c),
        sendDown: (agentId, message) => this.#sendDown(agentId, message),
        answered: (agentId, pull, answer) => this.emit('pull', agentId, pull, answer),
        superseded: (agentId) => this.emit('refused', 'pull_superseded', agentId, 1),
        outOfScope: (agentId) => this.scopes.retell(agentId),
        log: this.log,
      },
      options.maxPullBytesPerSecond,
    );
    this.#verify = new VerifyAnswers({
      store: this.store,
      clock: this.clock,
      mayVerify: (agentId, c) =>
        this.access.mayRead(agentId, c) && !this.scopes.directory.scoped(c) && this.#partitionOf(c) === this.partition,
      holdsBucket: (agentId, bucket) => this.scopes.directory.holds(agentId, bucket),
      bucketCollection: (agentId, bucket) => this.scopes.directory.collectionOf(agentId, bucket),
      sendDown: (agentId, message) => this.#sendDown(agentId, message),
      superseded: (agentId) => this.emit('refused', 'repair_superseded', agentId, 1),
      log: this.log,
    });
    this.#blobTraffic = new BlobIntake({
      content: this.store.content,
      document: (c, k) => this.store.document(c, k),
      clock: this.clock,
      rules: {
        owns: (c) => this.#partitionOf(c) === this.partition,
        holdsBlobs: (c) => this.policies.holdsBlobs(c),
        mayWrite: (agentId, c) => this.access.mayWrite(agentId, c),
        mayRead: (agentId, c, { buckets }) =>
          this.access.mayRead(agentId, c) &&
          (!this.scopes.directory.scoped(c) || !!buckets?.some((b) => this.scopes.directory.holds(agentId, b))),
      },
      maxBlobBytes: options.maxBlobBytes,
      sendDown: (agentId, message) => this.#sendDown(agentId, message),
      ...(options.fanOutBlobs && {
        fanOut: (h, message) => this.#send(this.topics.blob(h), () => downCodec.encode(this.#stamped(message)), false),
      }),
      dropped: (agentId) => this.emit('refused', 'blob_dropped', agentId, 1),
      log: this.log,
    });
    const ingestor = new Ingestor(this.store, this.clock, this.policies, {
      ...defaultIngestOptions,
      maxFutureSkewMs: this.config.maxClockSkewSeconds * 1000,
      mayWrite: (agentId, collection) => this.access.mayWrite(agentId, collection),
      partition: { name: this.partition, of: this.#partitionOf },
      scopes: scopeView(rules, this.config.access.groups, labelsOf),
    });
    this.#committer = new Committer(
      ingestor,
      (output, requests, seconds) => {
        this.#publishCommitted(output);
        const outcomes = output.replies.flatMap(({ message }) => (message[0] === 'ack' ? newOutcomes(message[1]) : []));
        this.emit('commit', requests, [...outcomes, ...output.hubResults.map((r) => r.outcome)], seconds);
      },
      (agentIds, error) => {
        for (const agentId of agentIds) {
          this.#sendDown(agentId, ['error', { code: ErrorCode.STORAGE_FAILED, message: `hub could not commit: ${error.message}` }]);
        }
        if (error instanceof WriterRefusedError) this.emit('fatal', error);
      },
      this.log,
    );
  }

  /** Before it serves: brings the scope bucket index in line with the config's rules (hub/scope-reindex.ts). */
  prepare(): Promise<void> {
    return reindexScopes(this.store, this.#scopeRules, this.config.collections, this.log);
  }

  /** Publishes the retained hub status, starts log retention (if configured) and the collection of unnamed blob content. */
  start(pruneIntervalMs = this.config.retention.intervalSeconds * 1000): void {
    this.publishStatus();
    this.#collections.load(this.store, (error, retryMs) =>
      this.log.error(
        { err: error, retryMs },
        'could not list the log’s collections; trying again (meanwhile status reports keep declared and newly committed ones)',
      ),
    );
    this.#retention.start(pruneIntervalMs);
    this.#blobs.start();
  }

  /** Commits and acknowledges what is queued, then accepts nothing more. */
  async drain(): Promise<void> {
    this.#pulls.stop();
    this.#blobTraffic.stop();
    this.#statuses.stop();
    this.#verify.stop();
    this.scopes.stop();
    this.#collections.stop();
    await this.#retention.stop();
    await this.#blobs.stop();
    await this.#committer.drain();
  }

  /** Drains, then closes the store. */
  async stop(): Promise<void> {
    await this.drain();
    await this.store.close();
  }

  /** Applies log retention now (see LogRetention). */
  pruneLog(): Promise<number> {
    return this.#retention.prune();
  }

  /** Removes blob content no document names now (see BlobCollector); the hashes removed. */
  collectBlobs(now?: number): Promise<string[]> {
    return this.#blobs.collect(now);
  }

  /** Commits a write made at the main site; it reaches the agents like any other. */
  write(write: HubWriteRequest['write']): Promise<WriteResult> {
    return this.#committer.write(write);
  }

  /** Commits again a write a restore lost, with its origin and timestamp (see hub/reapply.ts). */
  reapply(write: ReapplyRequest['write']): Promise<WriteResult> {
    return this.#committer.reapply(write);
  }

  /** One message an authenticated agent published on its own `up` topic (`bye`: on its bye topic, where only a bye is taken). */
  onUp(agentId: string, payload: Buffer, bye = false): void {
    this.emit('bytes', 'in', payload.length);
    let message;
    try {
      message = upCodec.decode(payload);
    } catch (error) {
      const { code, message: text } = error instanceof OutpostError ? error : { code: ErrorCode.MALFORMED_MESSAGE, message: String(error) };
      this.log.warn({ agentId, code, bytes: payload.length }, 'refused message from agent');
      this.#sendDown(agentId, ['error', { code, message: text }]);
      return;
    }
    if (bye && message[0] !== 'bye') return void this.log.warn({ agentId, type: message[0] }, 'ignored a message on a bye topic');
    switch (message[0]) {
      case 'batch':
        this.#committer.enqueueBatch(agentId, message[1]);
        break;
      case 'pull':
        this.#pulls.submit(agentId, message[1]);
        break;
      case 'lost':
        void recordLostReport(agentId, message[1], {
          store: this.store,
          log: this.log,
          rules: {
            lineage: this.store.lineage,
            ownsCollection: (c) => this.#partitionOf(c) === this.partition,
            mayRead: (id, c) => this.access.mayRead(id, c),
            mayWrite: (id, c) => this.access.mayWrite(id, c),
          },
          acknowledge: (id) => this.#sendDown(agentId, ['lostack', { id, hlc: this.clock.tick() }]),
        });
        break;
      case 'status':
        this.#statuses.submit(agentId, message[1]);
        break;
      case 'ranges':
      case 'refetch':
        this.#verify.submit(agentId, message);
        break;
      case 'hello':
        this.scopes.online(agentId, message[1].s);
        // Where the config declares budgets, the default partition's hub tells the device its own (none: none for it).
        if (this.partition === DEFAULT_PARTITION && Object.keys(this.config.budgets).length > 0)
          this.#sendDown(agentId, ['budget', { hlc: this.clock.tick(), ...declaredBudget(this.config, agentId) }]);
        break;
      case 'bye':
        this.scopes.offline(agentId, message[1].s);
        break;
      case 'bhave':
      case 'bchunk':
      case 'bget':
        this.#blobTraffic.submit(agentId, message);
        break;
    }
  }

  /** What agents have applied, and the writes waiting for replicas. */
  get replication(): ReplicationTracker {
    return this.#replicaAcks.tracker;
  }

  /** The partition a collection belongs to (by the config). */
  partitionOf(collection: string): string {
    return this.#partitionOf(collection);
  }

  /** The retained status on this partition's hub topic (see hubStatus). */
  publishStatus(): void {
    this.#broadcast(this.topics.hub, hubStatus(this), true);
  }

  #publishCommitted({ replies, changeSets, replicaWaits }: IngestOutput): void {
    // Change sets before acks: a writer that replicates what it wrote then holds the new version
    // when the ack comes, and lets the write go from its outbox in the ack's commit, instead of
    // marking it confirmed and letting it go in the next (half the writes to its flash card).
    for (const set of changeSets) {
      this.#collections.committed(set[1].c);
      if (!this.scopes.publish(set)) this.#broadcast(this.topics.collection(set[1].c), set);
    }
    for (const { agentId, message } of replies) {
      if (message[0] === 'reincarnate') {
        this.log.error(
          { agentId, incarnation: message[1].inc, seq: message[1].seq },
          'agent reused sequence numbers with different writes (restored from an old backup?); told it to start a new incarnation',
        );
      }
      this.#sendDown(agentId, message);
    }
    this.#replicaAcks.committed(replicaWaits);
  }

  /** Returns the bytes sent (0 if it could not be encoded). */
  #sendDown(agentId: string, message: DownMessage): number {
    return this.#send(this.topics.down(agentId), () => downCodec.encode(this.#stamped(message)), false);
  }

  /** Blob chunks published for every device fetching a content (see BlobIntake). */
  wantsBlob(agentId: string, hash: string): boolean {
    return this.#blobTraffic.wants(agentId, hash);
  }

  #stamped<M extends DownMessage>(message: M): M {
    if (message[0] !== 'error' && this.epoch !== undefined) message[1].epoch = this.epoch;
    return message;
  }

  #broadcast(topic: string, message: BroadcastMessage, retain = false): void {
    if (this.epoch !== undefined) message[1].epoch = this.epoch;
    this.#send(topic, () => broadcastCodec.encode(message), retain);
  }

  /** Messages are sized to fit; if one still does not, it is logged and not sent — never a crash. */
  #send(topic: string, encode: () => Buffer, retain: boolean): number {
    const payload = encodeOrLog(encode, this.log, topic);
    return payload ? this.#sendPayload(topic, payload, retain) : 0;
  }

  #sendPayload(topic: string, payload: Buffer, retain: boolean): number {
    this.emit('bytes', 'out', payload.length);
    this.#publish(topic, payload, retain);
    return payload.length;
  }
}

function encodeOrLog(encode: () => Buffer, log: Logger, topic?: string): Buffer | undefined {
  try {
    return encode();
  } catch (error) {
    log.error({ err: error, topic }, 'could not encode a message; not sent (the agent will pull what it misses)');
    return undefined;
  }
}
