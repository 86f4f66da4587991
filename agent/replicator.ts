import type { Logger } from 'pino';
import type { Change, ChangesMessage, PageMessage, PullMessage, SnapshotMessage } from '../shared/messages.js';
import type { AgentStore } from './store/agent-store.js';
import { faultPoint } from '../shared/fault-points.js';

export interface ReplicatorOptions {
  /** The hub partition whose log this replicator follows. */
  partition: string;
  /** Whether a collection belongs to the partition (it may change as the hub's assignment is heard); default all. */
  inPartition?: (collection: string) => boolean;
  /**
   * Whether pulling makes sense yet (default always): not before the agent knows which
   * collections are the partition's, or it could ask for and record another partition's LSNs.
   */
  mayPull?: () => boolean;
  /** Collections replicated here (of every partition); undefined = all. */
  collections: readonly string[] | undefined;
  pageLimit: number;
  /** Ask again when a page has not arrived within this time. */
  pullTimeoutMs: number;
}

export interface ReplicatorDelegate {
  send(pull: PullMessage): boolean;
  onApplied(changes: Change[]): void;
  /** After anything was applied or the watermark moved. */
  onProgress(): void;
  /** The hub's digest of a collection right after its change at `lsn`, just applied in order: the copy is compared (agent/verifier.ts). */
  verify?(collection: string, lsn: number, digest: number): void;
}

/**
 * Keeps the replica converging on the hub. Live change sets are applied when they follow on
 * from what is held (`prev` ≤ what this agent has seen of the collection); otherwise — and on
 * every (re)connect — the agent pulls the log from its watermark, page by page, one page asked
 * for ahead so that the hub's reading and this agent's writing overlap. Applying is
 * idempotent by version, so overlapping live and pulled changes are harmless.
 *
 *   idle ─connect / gap─► pulling ─page(more)─► pulling ─page(done)─► idle (or again, if a gap came meanwhile)
 */
export class Replicator {
  /** The pull in flight: its id, and where it started. */
  #pullId: number | undefined;
  #pullFrom: number | undefined;
  #nextId = Math.floor(Math.random() * 1_000_000_000);
  #pullAgain = false;
  #sentAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  /** Moves on `restart` and `stop`: a page received before is not applied after (#afterSending). */
  #generation = 0;

  readonly #partition: string;
  readonly #inPartition: (collection: string) => boolean;

  constructor(
    private readonly store: AgentStore,
    private readonly delegate: ReplicatorDelegate,
    private readonly options: ReplicatorOptions,
    private readonly log: Logger,
  ) {
    this.#partition = options.partition;
    this.#inPartition = options.inPartition ?? (() => true);
  }

  /** A pull is under way, or asked for. */
  get pulling(): boolean {
    return this.#pullId !== undefined || this.#pullAgain;
  }

  replicates(collection: string): boolean {
    return this.#inPartition(collection) && (this.options.collections === undefined || this.options.collections.includes(collection));
  }

  /** The replicated collections of this partition, when not all of them are. */
  #pulledCollections(): string[] | undefined {
    return this.options.collections?.filter((c) => this.#inPartition(c));
  }

  /** Everything up to this LSN of the partition's log is applied. */
  get watermark(): number {
    return this.store.partitions.watermarkOf(this.#partition);
  }

  /** On every (re)connect: catch up from the watermark. */
  onConnected(): void {
    this.#settlePull();
    this.#timer ??= setInterval(() => this.#checkTimeout(), Math.max(50, this.options.pullTimeoutMs / 4));
    this.#timer.unref?.();
    this.pull();
  }

  onDisconnected(): void {
    this.#settlePull();
  }

  stop(): void {
    this.#generation += 1;
    clearInterval(this.#timer);
    clearTimeout(this.#retryTimer);
    this.#timer = undefined;
  }

  /** The newest LSN heard of per collection (applied or not): what lag is measured against. */
  readonly heads = new Map<string, number>();

  #heard(collection: string, lsn: number): void {
    if (lsn > (this.heads.get(collection) ?? 0)) this.heads.set(collection, lsn);
  }

  onChanges([, set]: ChangesMessage): void {
    if (!this.replicates(set.c)) return;
    this.#heard(set.c, set.changes.at(-1)!.lsn);
    const seen = Math.max(this.store.replica.cursor(set.c), this.watermark);
    if (set.prev > seen) {
      this.log.debug({ collection: set.c, prev: set.prev, seen }, 'gap in change sets; pulling');
      this.pull();
      return;
    }
    if (
      this.#applyOrRetry(() => this.store.replica.applyChanges(this.#partition, set.changes, undefined, set.hlc)) &&
      set.dg !== undefined
    ) {
      this.delegate.verify?.(set.c, set.changes.at(-1)!.lsn, set.dg);
    }
  }

  /** A change that cannot be stored now (a full disk) is fetched again later by a pull. */
  #applyOrRetry(apply: () => Change[]): boolean {
    try {
      const applied = apply();
      faultPoint('agent.after-apply');
      this.#applied(applied);
      return true;
    } catch (error) {
      this.log.error({ err: error }, 'could not apply changes from the hub; pulling them again shortly');
      this.#settlePull();
      clearTimeout(this.#retryTimer);
      this.#retryTimer = setTimeout(() => this.pull(), this.options.pullTimeoutMs);
      this.#retryTimer.unref?.();
      return false;
    }
  }

  /** A snapshot page: the log no longer reached back to this agent's watermark. */
  onSnapshot([, snap]: SnapshotMessage): void {
    if (snap.id !== this.#pullId) return; // late or duplicated answer to an earlier pull
    if (this.store.partitions.snapshotProgressOf(this.#partition) === undefined && snap.docs.length > 0) {
      this.log.info({ from: snap.from, lsn: snap.lsn }, 'the hub log no longer reaches this replica; receiving a snapshot');
    }
    // Ask for the next page before applying this one, so that the hub reads it while this agent
    // writes (the apply is queued first: pages apply in order even if an answer came at once).
    // If applying fails, the pull is settled and that page is ignored when it comes.
    this.#afterSending(() => {
      const apply = (): Change[] =>
        this.store.replica.applySnapshotPage(
          this.#partition,
          snap.docs,
          snap.lsn,
          snap.next,
          this.#pulledCollections(),
          this.#inPartition,
          snap.hlc,
        );
      if (!this.#applyOrRetry(apply)) return;
      // Snapshot complete up to snap.lsn: now the log tail from there (unless a reconnect pulled meanwhile).
      if (snap.next || this.#pullId !== snap.id) return;
      this.#settlePull();
      this.#sendPull(this.watermark);
    });
    if (snap.next) this.#sendPull(snap.from, { lsn: snap.lsn, after: snap.next });
  }

  onPage([, page]: PageMessage): void {
    if (page.id !== this.#pullId) return; // late or duplicated answer to an earlier pull
    for (const c of page.changes) this.#heard(c.c, c.lsn);
    // The next page is asked for before this one is applied (see onSnapshot).
    this.#afterSending(() => {
      if (!this.#applyOrRetry(() => this.store.replica.applyChanges(this.#partition, page.changes, page.to, page.hlc))) return;
      if (page.dg) this.#verifyPage(page);
      // The last page of this pull, unless a reconnect started another meanwhile.
      if (page.more || this.#pullId !== page.id) return;
      this.#settlePull();
      if (this.#pullAgain) this.pull();
    });
    if (page.more) this.#sendPull(page.to);
  }

  /**
   * Runs `apply` (a page's) on the next turn of the event loop. MQTT.js writes what is sent to
   * the socket only once the current turn ends (it corks the socket until the next tick), so a
   * page applied in this turn would hold back the pull for the next one until it was applied:
   * the hub's reading and this agent's writing would take turns instead of overlapping (a
   * bootstrap ran 1.6× faster deferred). A page whose history was left meanwhile (`restart`),
   * or that comes after `stop` (the store closing), is not applied.
   */
  #afterSending(apply: () => void): void {
    const generation = this.#generation;
    setImmediate(() => {
      if (generation === this.#generation) apply();
    });
  }

  /** Each collection of an applied page as of its last change there, against the hub's digest then. */
  #verifyPage(page: PageMessage[1]): void {
    const last = new Map<string, number>();
    for (const c of page.changes) last.set(c.c, c.lsn);
    for (const [collection, digest] of Object.entries(page.dg ?? {})) {
      const lsn = last.get(collection);
      if (lsn !== undefined) this.delegate.verify?.(collection, lsn, digest);
    }
  }

  /**
   * The partition's log starts over (its hub was restored from a backup, and the watermark reset):
   * answers to earlier pulls are ignored, heads heard of belong to the old history, pull again.
   */
  restart(): void {
    this.#generation += 1;
    this.#settlePull();
    this.#pullAgain = false;
    this.heads.clear();
    this.pull();
  }

  /** Starts a pull from the watermark, or asks for another once the current one ends. */
  pull(): void {
    if (this.options.mayPull && !this.options.mayPull()) return;
    // This device replicates none of the partition's collections: there is nothing to ask its hub for.
    if (this.#pulledCollections()?.length === 0) return;
    if (this.#pullFrom !== undefined) {
      this.#pullAgain = true;
      return;
    }
    this.#sendPull(this.watermark, this.store.partitions.snapshotProgressOf(this.#partition));
  }

  /** No pull in flight any more: its late answers will be ignored. */
  #settlePull(): void {
    this.#pullId = undefined;
    this.#pullFrom = undefined;
  }

  #sendPull(from: number, snap?: { lsn: number; after: [string, string] }): void {
    this.#pullAgain = false;
    const id = this.#nextId++;
    const body: PullMessage[1] = { id, from, limit: this.options.pageLimit, ...(snap && { snap }) };
    const collections = this.#pulledCollections();
    if (collections) body.cs = collections;
    if (this.delegate.send(['pull', body])) {
      this.#pullId = id;
      this.#pullFrom = from;
      this.#sentAt = Date.now();
    } else {
      this.#settlePull();
    }
  }

  #checkTimeout(): void {
    if (this.#pullFrom !== undefined && Date.now() - this.#sentAt > this.options.pullTimeoutMs) {
      this.log.warn({ from: this.#pullFrom }, 'no page from hub; pulling again');
      this.#settlePull();
      this.pull();
    }
  }

  #applied(changes: Change[]): void {
    if (changes.length > 0) this.delegate.onApplied(changes);
    this.delegate.onProgress();
  }
}
