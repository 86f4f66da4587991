import type { Logger } from 'pino';
import { wholeCollectionBucketId } from '../shared/buckets.js';
import type { Change, ChangesMessage, PageMessage, PullMessage, ScopeMessage, SnapshotMessage } from '../shared/messages.js';
import { partitionScoped } from './store/agent-db.js';
import type { AgentStore } from './store/agent-store.js';
import type { EvictedDocument } from './store/replica.js';
import type { HeldBucket } from './store/scope-buckets.js';

export interface ScopeSyncDelegate {
  send(pull: PullMessage): boolean;
  onApplied(changes: Change[]): void;
  onEvicted(documents: EvictedDocument[]): void;
  onProgress(): void;
  /** The hub's digest of a bucket right after its change at `lsn`, just applied: the copy is compared (agent/verifier.ts). */
  verify?(bucket: string, collection: string, lsn: number, digest: number): void;
}

export interface ScopeSyncOptions {
  lane: string;
  pageLimit: number;
  /** Ask again when an answer has not come within this time. */
  pullTimeoutMs: number;
}

/** The lane's scoped collections, as its hub last said: their documents held through no bucket are evicted. */
const SCOPED_SETTING = 'scopedCollections';
/**
 * What the lane's device holds through none of its buckets is not evicted yet: its scope changed,
 * or a bucket is being fetched as a snapshot (joined, caught up past log retention, or again after
 * a hub restore), and a join is under way, or the device stopped first.
 */
const EVICTION_DUE_SETTING = 'scopeEvictionDue';

/** How many of the other buckets held a pull names (the protocol's bound): they only save bytes. */
const MAX_HELD_NAMED = 1024;

/**
 * Keeps the device's scoped collections: the buckets of its scope, each followed on its own
 * from its cursor, as the replicator follows the partition's log.
 * - The hub says which buckets the device holds (`scope`) when it comes online and when its
 *   scope changes. Documents held through none of them any more are evicted (the app hears
 *   `evicted`); a bucket joined is fetched as a snapshot of what the device lacks; buckets whose
 *   head is past their cursor are caught up from the cursor.
 * - A bucket's change set is applied when it follows on from the cursor (`prev`); otherwise
 *   the bucket is pulled. A document that left the bucket (`out`) is evicted unless another
 *   bucket held still has it.
 * One bucket is pulled at a time, page by page, the next page asked for before one is applied.
 */
export class ScopeSync {
  readonly #queue = new Set<string>();
  #pull: { id: number; bucket: string; sentAt: number } | undefined;
  #nextId = Math.floor(Math.random() * 1_000_000_000);
  #timer: NodeJS.Timeout | undefined;
  /** The newest head heard per bucket (applied or not). */
  readonly heads = new Map<string, number>();
  /**
   * Buckets the device just left, with the cursors it had: while it joins others, the documents
   * of theirs it kept (also in a bucket it still holds) need not come again. Forgotten on restart
   * (that costs bytes only).
   */
  #left = new Map<string, number>();
  /** The time of the newest scope taken on this connection. */
  #scopeHlc = '';

  /** Settings of this lane: each partition's hub speaks for its own collections only. */
  readonly #scopedSetting: string;
  /** The scoped collections as last stored (loaded on first use). */
  #scoped: Set<string> | undefined;
  readonly #evictionDueSetting: string;

  /** Each held bucket's collection, as the hub's last scope said. */
  readonly #bucketCollections = new Map<string, string>();

  constructor(
    private readonly store: AgentStore,
    private readonly delegate: ScopeSyncDelegate,
    private readonly options: ScopeSyncOptions,
    private readonly log: Logger,
  ) {
    this.#scopedSetting = partitionScoped(SCOPED_SETTING, options.lane);
    this.#evictionDueSetting = partitionScoped(EVICTION_DUE_SETTING, options.lane);
  }

  #held(): Map<string, HeldBucket> {
    return this.store.scope.held(this.options.lane);
  }

  /** Whether the hub scopes this collection (as it last said): the device then holds part of it, by bucket. */
  scoped(collection: string): boolean {
    return this.#scopedSet().has(collection);
  }

  /** The collections the hub scopes (as it last said). */
  scopedCollections(): string[] {
    return [...this.#scopedSet()];
  }

  /** A held bucket's collection, as the hub's scope said (a bucket's id does not say it). */
  collectionOfBucket(bucket: string): string | undefined {
    return this.#bucketCollections.get(bucket);
  }

  /** What verifying the lane's buckets needs to know of its scope. */
  verifierView(): { scopedCollections(): readonly string[]; collectionOfBucket(bucket: string): string | undefined } {
    return { scopedCollections: () => this.scopedCollections(), collectionOfBucket: (bucket) => this.collectionOfBucket(bucket) };
  }

  #scopedSet(): Set<string> {
    return (this.#scoped ??= new Set(this.store.settings.get<string[]>(this.#scopedSetting) ?? []));
  }

  /** A bucket pull is under way or due. */
  get pulling(): boolean {
    return this.#pull !== undefined || this.#queue.size > 0;
  }

  onConnected(): void {
    this.#pull = undefined;
    this.#scopeHlc = '';
    this.#timer ??= setInterval(() => this.#checkTimeout(), Math.max(50, this.options.pullTimeoutMs / 4));
    this.#timer.unref?.();
    // What to pull comes with the scope the hub sends once this device listens.
  }

  /** A hub process (re)started behind the broker: its scope times start anew. */
  onHubRestarted(): void {
    this.#scopeHlc = '';
  }

  onDisconnected(): void {
    this.#pull = undefined;
  }

  /**
   * The partition's hub was restored and the store joined every bucket again (cursor -1): each
   * is fetched anew. An answer to a pull sent before belongs to the history that was lost, and
   * is ignored; so are the cursors of the buckets just left.
   */
  onRestored(): void {
    this.#pull = undefined;
    this.#left.clear();
    for (const bucket of this.#held().keys()) this.#queue.add(bucket);
    this.#pump();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  onScope([, scope]: ScopeMessage): void {
    // An older scope delivered after a newer one (messages reordered) would undo it.
    if (scope.hlc <= this.#scopeHlc) return;
    this.#scopeHlc = scope.hlc;
    const before = this.#held();
    const now = new Map(scope.bs);
    const joined = [...now.keys()].filter((b) => !before.has(b));
    const left = [...before.keys()].filter((b) => !now.has(b));
    const scopedBefore = this.store.settings.get<string[]>(this.#scopedSetting) ?? [];
    if (joined.length > 0 || left.length > 0 || scope.cs.some((c) => !scopedBefore.includes(c))) {
      // Kept until done, so that a restart in between still evicts what left.
      this.store.settings.set(this.#evictionDueSetting, true);
    }
    this.store.settings.set(this.#scopedSetting, scope.cs);
    this.#scoped = undefined;
    this.#bucketCollections.clear();
    scope.bc?.forEach((index, i) => {
      const collection = scope.cs[index];
      if (collection !== undefined && i < scope.bs.length) this.#bucketCollections.set(scope.bs[i]![0], collection);
    });
    this.store.scope.reconcile(this.options.lane, joined, left);
    if (joined.length > 0 || left.length > 0) this.log.info({ joined: joined.length, left: left.length }, 'scope changed');
    for (const b of left) {
      this.#queue.delete(b);
      this.heads.delete(b);
      const state = before.get(b)!;
      if (state.cursor > 0 && !state.snapshot) this.#left.set(b, state.cursor);
    }
    // A collection the device held whole and that is scoped now: what it holds need not come again.
    const cursors = this.store.replica.cursors();
    for (const c of scope.cs) {
      if (!scopedBefore.includes(c) && (cursors[c] ?? 0) > 0) this.#left.set(wholeCollectionBucketId(c), cursors[c]!);
    }
    for (const b of now.keys()) this.#left.delete(b);
    if (this.#pull && left.includes(this.#pull.bucket)) this.#pull = undefined;
    const held = this.#held();
    for (const [bucket, head] of now) {
      this.heads.set(bucket, Math.max(head, this.heads.get(bucket) ?? 0));
      const state = held.get(bucket)!;
      if (state.cursor < 0 || state.snapshot || head > state.cursor) this.#queue.add(bucket);
    }
    this.#evictOutsideOnceJoined();
    this.delegate.onProgress();
    this.#pump();
  }

  /**
   * Evicts what the device holds through no bucket of its scope, once it joins none: until then a
   * join may yet tag a document it holds under buckets the hub's rules renamed. The buckets just
   * left are forgotten then too.
   */
  #evictOutsideOnceJoined(): void {
    const held = this.#held();
    if ([...held.values()].some((s) => s.cursor < 0 || s.snapshot)) return;
    this.#left.clear();
    if (this.store.settings.get<boolean>(this.#evictionDueSetting) !== true) return;
    const evicted = this.store.replica.evictOutside(new Set(held.keys()), this.store.settings.get<string[]>(this.#scopedSetting) ?? []);
    this.store.settings.set(this.#evictionDueSetting, false);
    if (evicted.length > 0) this.delegate.onEvicted(evicted);
  }

  onChanges([, set]: ChangesMessage): void {
    const bucket = set.b!;
    const held = this.#held();
    const state = held.get(bucket);
    if (!state) return; // not (or no longer) this device's: its scope is on its way
    const last = set.changes.at(-1)!.lsn;
    this.heads.set(bucket, Math.max(last, this.heads.get(bucket) ?? 0));
    if (state.cursor < 0 || state.snapshot || set.prev > state.cursor) {
      this.log.debug({ bucket, prev: set.prev, cursor: state.cursor }, 'gap in a bucket’s change sets; pulling it');
      this.#queue.add(bucket);
      this.#pump();
      return;
    }
    // Only what lies past the cursor: a join's snapshot lists the documents in the bucket at its
    // LSN and nothing of those that left before, so a change from before it, arriving late,
    // would bring back a document that has since left the bucket, and no `out` would follow.
    const fresh = set.changes.filter((c) => c.lsn > state.cursor);
    if (fresh.length > 0 && this.#apply(bucket, fresh, last, held) && set.dg !== undefined) {
      this.delegate.verify?.(bucket, set.c, last, set.dg);
    }
  }

  onPage([, page]: PageMessage): void {
    if (!this.#answers(page.id, page.b)) return;
    const bucket = page.b!;
    for (const c of page.changes) this.heads.set(bucket, Math.max(c.lsn, this.heads.get(bucket) ?? 0));
    if (page.more) this.#send(bucket, page.to);
    if (!this.#apply(bucket, page.changes, page.to)) return;
    // The bucket's digest, when the page reaches its head: the copy as of `to` compares.
    for (const [collection, digest] of Object.entries(page.dg ?? {})) this.delegate.verify?.(bucket, collection, page.to, digest);
    if (page.more) return;
    this.#pull = undefined;
    this.#evictOutsideOnceJoined(); // a join answered by the log (a hub whose head was 0)
    this.#pump();
  }

  onSnapshot([, snap]: SnapshotMessage): void {
    if (!this.#answers(snap.id, snap.b)) return;
    const bucket = snap.b!;
    // A snapshot begun (not one resumed): the bucket is learnt anew, as when it is joined (a held
    // bucket caught up past log retention too: the `out` of what left it was pruned). What it no
    // longer names is evicted once it completes (due first: a restart in between must not forget it).
    const fresh = this.#held().get(bucket)?.snapshot?.lsn !== snap.lsn;
    if (fresh) this.store.settings.set(this.#evictionDueSetting, true);
    if (snap.next) this.#send(bucket, snap.from, { lsn: snap.lsn, after: snap.next });
    try {
      const applied = this.store.replica.applyBucketSnapshot(this.options.lane, bucket, snap.docs, snap.lsn, snap.next, fresh);
      if (applied.length > 0) this.delegate.onApplied(applied);
      this.delegate.onProgress();
    } catch (error) {
      this.#failed(bucket, error);
      return;
    }
    if (snap.next) return;
    this.#evictOutsideOnceJoined();
    // The snapshot is whole up to its LSN: the bucket's log from there.
    this.#send(bucket, Math.max(snap.lsn, this.#held().get(bucket)?.cursor ?? 0));
  }

  #answers(id: number, bucket: string | undefined): boolean {
    return this.#pull !== undefined && this.#pull.id === id && this.#pull.bucket === bucket;
  }

  /** `held`: the buckets held, when the caller has just read them (each live change set does). */
  #apply(bucket: string, changes: readonly Change[], through: number, held = this.#held()): boolean {
    try {
      const { applied, evicted } = this.store.replica.applyBucketChanges(this.options.lane, bucket, changes, through, held);
      if (applied.length > 0) this.delegate.onApplied(applied);
      if (evicted.length > 0) this.delegate.onEvicted(evicted);
      this.delegate.onProgress();
      return true;
    } catch (error) {
      this.#failed(bucket, error);
      return false;
    }
  }

  /** What cannot be stored now (a full disk) is pulled again after the pull timeout. */
  #failed(bucket: string, error: unknown): void {
    this.log.error({ err: error, bucket }, 'could not apply a bucket’s changes; pulling them again shortly');
    this.#pull = undefined;
    this.#queue.add(bucket);
    const retry = setTimeout(() => this.#pump(), this.options.pullTimeoutMs);
    retry.unref?.();
  }

  /** Starts the next bucket's pull, if none is under way. */
  #pump(): void {
    if (this.#pull) return;
    const held = this.#held();
    for (const bucket of this.#queue) {
      this.#queue.delete(bucket);
      const state = held.get(bucket);
      if (!state) continue;
      // A bucket joined (cursor -1) is pulled from 0: as a snapshot of what it holds now.
      const from = Math.max(0, state.cursor);
      if (state.snapshot) this.#send(bucket, from, state.snapshot);
      else this.#send(bucket, from);
      if (this.#pull) return;
      this.#queue.add(bucket); // not sent (offline): kept for the next scope or connection
      return;
    }
  }

  #send(bucket: string, from: number, snap?: { lsn: number; after: [string, string] }): void {
    const id = this.#nextId++;
    const body: PullMessage[1] = { id, from, b: bucket, limit: this.options.pageLimit, ...(snap && { snap }) };
    // A snapshot leaves out what the other buckets held (or just left) already brought.
    if (from === 0 || snap) {
      const held = [...this.#held()]
        .filter(([b, s]) => b !== bucket && s.cursor > 0 && !s.snapshot)
        .map(([b, s]): [string, number] => [b, s.cursor]);
      const others = [...held, ...this.#left].slice(0, MAX_HELD_NAMED);
      if (others.length > 0) body.held = Object.fromEntries(others);
    }
    if (this.delegate.send(['pull', body])) this.#pull = { id, bucket, sentAt: Date.now() };
    else this.#pull = undefined;
  }

  #checkTimeout(): void {
    const pull = this.#pull;
    if (pull && Date.now() - pull.sentAt > this.options.pullTimeoutMs) {
      this.log.warn({ bucket: pull.bucket }, 'no answer to a bucket pull; pulling again');
      this.#pull = undefined;
      this.#queue.add(pull.bucket);
      this.#pump();
    }
  }
}
