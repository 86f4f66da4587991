import { EventEmitter } from 'node:events';
import pino, { type Logger } from 'pino';
import { newOutcomes } from '../shared/acks.js';
import { broadcastCodec, downCodec, upCodec } from '../shared/codec.js';
import { ErrorCode, OutpostError } from '../shared/errors.js';
import { HybridClock } from '../shared/hlc.js';
import { limits } from '../shared/limits.js';
import type {
  BroadcastMessage,
  DownMessage,
  LostMessage,
  OpResult,
  PageMessage,
  PullMessage,
  SnapshotMessage,
} from '../shared/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol-version.js';
import { DEFAULT_PARTITION, partitionTopics, type PartitionTopics } from '../shared/topics.js';
import { AccessControl } from './access.js';
import { Committer } from './committer.js';
import { assignment, CollectionPolicies, DEFAULT_HUB_CONFIG, type HubConfig } from './config.js';
import {
  defaultIngestOptions,
  Ingestor,
  type HubWriteRequest,
  type IngestOutput,
  type ReapplyRequest,
  type WriteResult,
} from './ingest.js';
import { acceptLostReport } from './lost-reports.js';
import { answerPull } from './pull.js';
import { KnownCollections } from './known-collections.js';
import { PullQueue } from './pull-queue.js';
import { RefusedWorkLog, type RefusedWork } from './refused-work.js';
import { ReplicationTracker, type ReplicaWait } from './replication-tracker.js';
import { clampApplied, MAX_NEW_WAITS_PER_REPORT, reportedWaits } from './status-report.js';
import type { HubStore } from './store/hub-store.js';
import { WriterRefusedError } from './store/writer-errors.js';

export interface HubEvents {
  /** A pull was answered (a log page or a snapshot page). */
  pull: [agentId: string, pull: PullMessage[1], answer: PageMessage | SnapshotMessage];
  /** A group commit finished: how many requests it held, every op's outcome, how long it took. */
  commit: [requests: number, outcomes: OpResult['outcome'][], seconds: number];
  /** Bytes of protocol messages received from agents and sent by the hub. */
  bytes: [direction: 'in' | 'out', bytes: number];
  /**
   * Work refused to one client to bound what it costs (docs/SECURITY.md): a pull replaced by a
   * newer one before it was answered, a replica wait over its limits, collections a status
   * named that do not exist.
   */
  refused: [kind: RefusedWork, agentId: string, count: number];
  /**
   * The store refuses this process as its writer (another hub leads now, or another writer
   * committed): nothing more can be committed. Whoever runs the hub should stop it.
   */
  fatal: [error: Error];
}

export interface HubCoreOptions {
  /**
   * The primary store (this partition's log), opened by whoever assembles the hub: the core
   * works the same on any store. It closes it on `stop()`.
   */
  store: HubStore;
  /** This process's leadership epoch (hub/leadership.ts), stamped on what it sends; none without failover. */
  epoch?: number;
  config?: HubConfig;
  logger?: Logger;
  /** Development mode: every agent may read and write everything. */
  dev?: boolean;
  /**
   * The partition this core is the log of (default `default`): it publishes on that partition's
   * topics and refuses writes to collections of other partitions (`wrong_partition`).
   */
  partition?: string;
  /** Sends a message to MQTT subscribers (QoS 1). Whatever carries it — embedded broker or not. */
  publish: (topic: string, payload: Buffer, retain: boolean) => void;
}

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
  readonly replication = new ReplicationTracker();
  /** What agents' status reports may name (see KnownCollections). */
  readonly #collections: KnownCollections;
  readonly #pulls = new PullQueue(
    (agentId, pull) => this.#answerPull(agentId, pull),
    (agentId) => this.emit('refused', 'pull_superseded', agentId, 1),
  );
  readonly access: AccessControl;
  /** The partition this core is the log of. */
  readonly partition: string;
  /** That partition's topics, which everything this core publishes goes to. */
  readonly topics: PartitionTopics;
  readonly #committer: Committer;
  readonly #partitionOf: (collection: string) => string;
  readonly #publish: HubCoreOptions['publish'];
  #pruneTimer: NodeJS.Timeout | undefined;
  #pruning: Promise<number> | undefined;
  readonly #stopPruning = new AbortController();

  constructor(options: HubCoreOptions) {
    super();
    this.log = options.logger ?? pino({ level: 'silent' });
    this.config = options.config ?? DEFAULT_HUB_CONFIG;
    this.policies = new CollectionPolicies(this.config);
    const refusals = new RefusedWorkLog(this.log);
    this.on('refused', (kind, agentId, count) => refusals.record(kind, agentId, count));
    this.#collections = new KnownCollections(Object.keys(this.config.collections));
    this.access = new AccessControl(this.config.access, options.dev ?? false);
    this.#publish = options.publish;
    this.store = options.store;
    this.epoch = options.epoch;
    this.partition = options.partition ?? DEFAULT_PARTITION;
    this.topics = partitionTopics(this.partition);
    const owners = new Map(Object.entries(assignment(this.config)));
    this.#partitionOf = (collection) => owners.get(collection) ?? DEFAULT_PARTITION;
    const ingestor = new Ingestor(this.store, this.clock, this.policies, {
      ...defaultIngestOptions,
      maxFutureSkewMs: this.config.maxClockSkewSeconds * 1000,
      mayWrite: (agentId, collection) => this.access.mayWrite(agentId, collection),
      partition: { name: this.partition, of: this.#partitionOf },
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

  /** Publishes the retained hub status and starts log retention, if configured. */
  start(pruneIntervalMs = this.config.retention.intervalSeconds * 1000): void {
    this.publishStatus();
    this.#collections.load(this.store, (error, retryMs) =>
      this.log.error(
        { err: error, retryMs },
        'could not list the log’s collections; trying again (meanwhile status reports keep declared and newly committed ones)',
      ),
    );
    const { maxAgeHours, maxEntries } = this.config.retention;
    if (maxAgeHours > 0 || maxEntries > 0) {
      this.#pruneTimer = setInterval(() => {
        this.pruneLog().catch((error: unknown) => this.log.error({ err: error }, 'log retention failed; will try again'));
      }, pruneIntervalMs);
      this.#pruneTimer.unref();
    }
  }

  /** Commits and acknowledges what is queued, then accepts nothing more. */
  async drain(): Promise<void> {
    clearInterval(this.#pruneTimer);
    this.#collections.stop();
    // The store closes next: retention stops after the chunk under way (its bound is recorded,
    // the next prune removes the rest), rather than holding the stop for the whole prune.
    this.#stopPruning.abort();
    await this.#pruning?.catch(() => undefined);
    await this.#committer.drain();
  }

  /** Drains, then closes the store. */
  async stop(): Promise<void> {
    await this.drain();
    await this.store.close();
  }

  /**
   * Applies log retention now; agents behind the pruned part catch up by snapshot. A prune takes
   * several turns of the event loop (commits run between its chunks): one asked for while another
   * is under way joins it.
   */
  pruneLog(): Promise<number> {
    this.#pruning ??= this.#prune().finally(() => (this.#pruning = undefined));
    return this.#pruning;
  }

  async #prune(): Promise<number> {
    const { maxAgeHours, maxEntries } = this.config.retention;
    const before = this.store.prunedThrough;
    const through = await this.store.prune({ maxAgeMs: maxAgeHours * 3_600_000, maxEntries }, undefined, this.#stopPruning.signal);
    if (through > before) this.log.info({ prunedThrough: through }, 'log retention applied');
    return through;
  }

  /** Commits a write made at the main site; it reaches the agents like any other. */
  write(write: HubWriteRequest['write']): Promise<WriteResult> {
    return this.#committer.write(write);
  }

  /** Commits again a write a restore lost, with its origin and timestamp (see hub/reapply.ts). */
  reapply(write: ReapplyRequest['write']): Promise<WriteResult> {
    return this.#committer.reapply(write);
  }

  /** One message an authenticated agent published on its own `up` topic. */
  onUp(agentId: string, payload: Buffer): void {
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
    switch (message[0]) {
      case 'batch':
        this.#committer.enqueueBatch(agentId, message[1]);
        break;
      case 'pull':
        this.#pulls.submit(agentId, message[1]);
        break;
      case 'lost':
        void this.#recordLost(agentId, message[1]);
        break;
      case 'status': {
        const status = message[1];
        const head = this.store.head;
        const applied = this.#collections.filter(status.applied, (c) => this.access.mayRead(agentId, c));
        const ignored = Object.keys(status.applied).length - Object.keys(applied).length;
        if (ignored > 0) this.emit('refused', 'status_collection', agentId, ignored);
        const met = this.replication.report(agentId, clampApplied(applied, head), status.outbox, {
          ...(status.oldest !== undefined && { oldestPendingMs: status.oldest }),
          ...(status.ver !== undefined && { version: status.ver }),
        });
        const { waits, dropped } = reportedWaits(agentId, status, head, (c) => this.access.mayWrite(agentId, c));
        if (dropped > 0) this.emit('refused', 'replica_wait', agentId, dropped);
        this.#notifyReplicated([...met, ...this.#addWaits(waits, MAX_NEW_WAITS_PER_REPORT)]);
        break;
      }
    }
  }

  /**
   * Keeps a chunk of an agent's report of versions a restore lost, then acknowledges it; if it
   * cannot be stored, the agent sends it again after its timeout.
   */
  async #recordLost(agentId: string, body: LostMessage[1]): Promise<void> {
    const { report, dropped } = acceptLostReport(agentId, body, {
      lineage: this.store.lineage,
      ownsCollection: (c) => this.#partitionOf(c) === this.partition,
      mayRead: (id, c) => this.access.mayRead(id, c),
      mayWrite: (id, c) => this.access.mayWrite(id, c),
    });
    try {
      await this.store.recordLost(report);
    } catch (error) {
      this.log.error({ err: error, agentId }, 'could not store a report of lost writes; the agent will send it again');
      return;
    }
    this.log.warn(
      { agentId, lineage: body.lin, fork: body.fork, documents: report.docs.length, ...(dropped > 0 && { dropped }) },
      'an agent reported versions the restored database lost; list them with `outpost hub restore lost`',
    );
    this.#sendDown(agentId, ['lostack', { id: body.id, hlc: this.clock.tick() }]);
  }

  /** Answers one pull (PullQueue calls it, one at a time per agent). */
  async #answerPull(agentId: string, pull: PullMessage[1]): Promise<void> {
    try {
      const answer = await answerPull(this.store, this.clock, pull, limits.maxMessageBytes / 2, (c) => this.access.mayRead(agentId, c));
      this.#sendDown(agentId, answer);
      this.emit('pull', agentId, pull, answer);
    } catch (error) {
      // The agent asks again after its pull timeout; tell it why meanwhile.
      this.log.error({ err: error, agentId }, 'could not answer a pull');
      this.#sendDown(agentId, [
        'error',
        { code: ErrorCode.STORAGE_FAILED, message: `hub could not read its store: ${(error as Error).message}` },
      ]);
    }
  }

  /** The partition a collection belongs to (by the config). */
  partitionOf(collection: string): string {
    return this.#partitionOf(collection);
  }

  /**
   * The retained status on this partition's hub topic. A named partition's says which it is
   * (`part`); the default partition's carries the assignment (`parts`), which agents route their
   * writes by; without partitions it is what it always was.
   */
  publishStatus(): void {
    const parts = assignment(this.config);
    this.#broadcast(
      this.topics.hub,
      [
        'hub',
        {
          v: PROTOCOL_VERSION,
          hlc: this.clock.tick(),
          head: this.store.head,
          ...(this.epoch !== undefined && { epoch: this.epoch }),
          lin: this.store.lineage.id,
          fork: this.store.lineage.fork,
          ...this.policies.describe(),
          ...(this.partition !== DEFAULT_PARTITION && { part: this.partition }),
          ...(this.partition === DEFAULT_PARTITION && Object.keys(parts).length > 0 && { parts }),
        },
      ],
      true,
    );
  }

  #publishCommitted({ replies, changeSets, replicaWaits }: IngestOutput): void {
    for (const { agentId, message } of replies) {
      if (message[0] === 'reincarnate') {
        this.log.error(
          { agentId, incarnation: message[1].inc, seq: message[1].seq },
          'agent reused sequence numbers with different writes (restored from an old backup?); told it to start a new incarnation',
        );
      }
      this.#sendDown(agentId, message);
    }
    for (const set of changeSets) {
      this.#collections.committed(set[1].c);
      this.#broadcast(this.topics.collection(set[1].c), set);
    }
    if (replicaWaits.length > 0) this.#notifyReplicated(this.#addWaits(replicaWaits));
  }

  /** Registers replica waits; those over the tracker's limits are refused, and said so (their writers time out). */
  #addWaits(waits: readonly ReplicaWait[], maxNew?: number): ReplicaWait[] {
    const met: ReplicaWait[] = [];
    for (const agentId of new Set(waits.map((w) => w.agentId))) {
      const before = this.replication.refused;
      met.push(
        ...this.replication.add(
          waits.filter((w) => w.agentId === agentId),
          maxNew,
        ),
      );
      const refused = this.replication.refused - before;
      if (refused > 0) this.emit('refused', 'replica_wait', agentId, refused);
    }
    return met;
  }

  #notifyReplicated(done: ReplicaWait[]): void {
    const byWriter = new Map<string, { agentId: string; inc: string; seqs: number[] }>();
    for (const w of done) {
      const id = `${w.agentId}/${w.inc}`;
      const entry = byWriter.get(id) ?? { agentId: w.agentId, inc: w.inc, seqs: [] };
      entry.seqs.push(w.seq);
      byWriter.set(id, entry);
    }
    for (const { agentId, inc, seqs } of byWriter.values()) {
      this.#sendDown(agentId, ['replicated', { inc, hlc: this.clock.tick(), seqs }]);
    }
  }

  #sendDown(agentId: string, message: DownMessage): void {
    if (message[0] !== 'error' && this.epoch !== undefined) message[1].epoch = this.epoch;
    this.#send(this.topics.down(agentId), () => downCodec.encode(message), false);
  }

  #broadcast(topic: string, message: BroadcastMessage, retain = false): void {
    if (this.epoch !== undefined) message[1].epoch = this.epoch;
    this.#send(topic, () => broadcastCodec.encode(message), retain);
  }

  /** Messages are sized to fit; if one still does not, it is logged and not sent — never a crash. */
  #send(topic: string, encode: () => Buffer, retain: boolean): void {
    let payload: Buffer;
    try {
      payload = encode();
    } catch (error) {
      this.log.error({ err: error, topic }, 'could not encode a message; not sent (the agent will pull what it misses)');
      return;
    }
    this.emit('bytes', 'out', payload.length);
    this.#publish(topic, payload, retain);
  }
}
