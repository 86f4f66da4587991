import type { Logger } from 'pino';
import { keyPosition, MAX_RANGE_DEPTH } from '../shared/digest.js';
import {
  MAX_RANGES,
  type Change,
  type DigestsMessage,
  type RangeSumsMessage,
  type RefetchedMessage,
  type UpMessage,
} from '../shared/messages.js';
import { BucketChecks } from './bucket-checks.js';
import { RangeRepairer, type Step } from './range-repairer.js';
import type { AgentStore } from './store/agent-store.js';
import type { RepairCause, VerificationBook } from './verification-book.js';

export interface VerifierDelegate {
  send(message: UpMessage): boolean;
  /** A repair rewrote these documents (as the hub has them) and removed these (the hub has none). */
  onRepaired(collection: string, written: Change[], removed: Array<{ collection: string; key: string }>): void;
  /** A status report should go now (it asks the hub for its digests). */
  requestStatus(): void;
}

export interface VerifierOptions {
  partition: string;
  /** Whether the device holds the collection whole (replicated, unscoped, of this lane): only those are verified whole. */
  verifiable(collection: string): boolean;
  /** The lane's scoped collections, as its hub last said: verified bucket by bucket (BucketChecks). None by default. */
  scopedCollections?(): readonly string[];
  /** A held bucket's collection, as the hub's scope said. */
  collectionOfBucket?(bucket: string): string | undefined;
  /** Ask the hub for its digests this often when nothing else did (a quiet device). */
  verifyIntervalMs: number;
  /** Ask again when an answer has not come within this time. */
  answerTimeoutMs: number;
}

/** What a status report asks the hub to verify: collections (`v`) and buckets (`vb`), each at an LSN. */
export interface VerifyQuestion {
  v?: Record<string, number>;
  vb?: Record<string, number>;
}

/**
 * Verifies this lane's copy of the collections it holds whole, and of the scope buckets it
 * follows (BucketChecks), and has what differs repaired (RangeRepairer).
 *
 * Verifying compares the replica's digest of a collection (agent/store) with the hub's at the
 * same LSN: after applying a change set or page that carries one (a mismatch there means a
 * change was missed on the way: cause `hole`), and for a quiet device through its status report,
 * which asks the hub for its digests when due (cause `digest`). A scrub's rotten rows come in
 * by key (cause `scrub`). The pending writes in the outbox are never touched.
 */
export class Verifier {
  #due = true;
  /** The digests a status report asked the hub to compare, until it answers (see `question`). */
  #question: Map<string, { lsn: number; digest: number }> | undefined;
  readonly #repairer: RangeRepairer;
  readonly #buckets: BucketChecks;
  #timer: NodeJS.Timeout | undefined;
  #lastDueAt = Date.now();

  constructor(
    private readonly store: AgentStore,
    private readonly book: VerificationBook,
    private readonly delegate: VerifierDelegate,
    private readonly options: VerifierOptions,
    private readonly log: Logger,
  ) {
    this.#repairer = new RangeRepairer(
      store,
      book,
      {
        send: (message) => delegate.send(message),
        onRepaired: (collection, written, removed) => delegate.onRepaired(collection, written, removed),
        onEnded: (verifyNow) => {
          // Verify the repaired copy as soon as it is applied past the repair's answers.
          this.#due = true;
          if (verifyNow) delegate.requestStatus();
        },
      },
      { partition: options.partition, answerTimeoutMs: options.answerTimeoutMs },
      log,
    );
    this.#buckets = new BucketChecks(
      store,
      this.#repairer,
      book,
      {
        partition: options.partition,
        scopedCollections: () => options.scopedCollections?.() ?? [],
        collectionOfBucket: (bucket) => options.collectionOfBucket?.(bucket),
      },
      log,
    );
  }

  /** Collections being repaired (or waiting to be), whole or by bucket. */
  get repairing(): string[] {
    return [...new Set(this.#repairer.repairing.map((s) => s.collection))];
  }

  start(): void {
    this.#timer ??= setInterval(
      () => this.#tick(),
      Math.max(50, Math.min(this.options.verifyIntervalMs, this.options.answerTimeoutMs) / 4),
    );
    this.#timer.unref?.();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  onConnected(): void {
    // Taken now, before anything the hub sends is applied: see #capture.
    this.#question = this.#capture();
    this.#buckets.question(true);
    this.#due = false;
    this.#lastDueAt = Date.now();
    this.#repairer.onConnected();
  }

  #tick(): void {
    const now = Date.now();
    if (now - this.#lastDueAt >= this.options.verifyIntervalMs) {
      this.#lastDueAt = now;
      this.#due = true;
      this.delegate.requestStatus();
    }
    this.#repairer.tick(now);
  }

  /**
   * The hub's digest of a collection at `lsn`: compared if the replica holds the collection as of
   * exactly that LSN (its cursor there), and no repair of it is under way or settling.
   * Returns false when it could not be compared.
   */
  check(collection: string, lsn: number, digest: number, cause: RepairCause): boolean {
    if (this.store.replica.cursor(collection) !== lsn) return false;
    return this.#compare(collection, lsn, digest, this.store.replica.digest(collection), cause);
  }

  /** The hub's digest of a bucket right after its change at `lsn`, just applied (BucketChecks.check); false if not compared. */
  checkBucket(bucket: string, collection: string, lsn: number, digest: number): boolean {
    return this.#buckets.check(bucket, collection, lsn, digest);
  }

  /** The hub's digest of a collection at `lsn` against the replica's (`held`) at the same LSN; false if it could not be compared. */
  #compare(collection: string, lsn: number, digest: number, held: number, cause: RepairCause): boolean {
    const subject = { collection };
    if (!this.options.verifiable(collection) || this.#repairer.busy(subject)) return false;
    if (!this.#repairer.settledAt(subject, lsn)) return false;
    if (held === digest) {
      this.book.verified(lsn);
      this.#repairer.matched(subject);
      return true;
    }
    this.log.warn(
      { partition: this.options.partition, collection, lsn, cause },
      "this device's copy of a collection differs from the hub's; repairing it by key ranges",
    );
    this.book.found();
    this.#repairer.enqueue(subject, cause);
    return true;
  }

  /** Rows whose stored bytes no longer match their hash (the scrub found them): refetched by key, a scoped collection's through a bucket. */
  repairKeys(collection: string, keys: readonly string[]): void {
    this.book.found(keys.length);
    if (this.options.scopedCollections?.().includes(collection)) {
      this.#buckets.repairKeys(collection, keys);
      return;
    }
    if (!this.options.verifiable(collection)) {
      this.log.error(
        { collection, keys: keys.slice(0, 10) },
        'rows of a collection this lane does not hold whole are damaged; not repaired',
      );
      return;
    }
    const ps = [...new Set(keys.map(keyPosition))];
    const steps: Step[] = [];
    for (let i = 0; i < ps.length; i += MAX_RANGES) steps.push({ kind: 'refetch', d: MAX_RANGE_DEPTH, ps: ps.slice(i, i + MAX_RANGES) });
    this.#repairer.enqueue({ collection }, 'scrub', steps);
  }

  /** The hub's answer to a status report that asked to verify, or to a repair's question; `bytes` its size on the wire. */
  onMessage(message: DigestsMessage | RangeSumsMessage | RefetchedMessage, bytes: number): void {
    if (message[0] === 'digests') this.#onDigests(message);
    else if (message[0] === 'rangesums') this.#repairer.onRangeSums(message, bytes);
    else this.#repairer.onRefetched(message, bytes);
  }

  /**
   * What the next status report asks the hub to verify: each collection held whole at the LSN its
   * digest was taken (`v`), each bucket followed at its cursor then (`vb`); undefined when no
   * check is due. The question stands until answered.
   */
  question(): VerifyQuestion | undefined {
    const capture = !this.#question && this.#due;
    if (capture) this.#question = this.#capture();
    const vb = this.#buckets.question(capture && !this.#buckets.asking);
    this.#due = false;
    const v = this.#question && Object.fromEntries([...this.#question].map(([c, q]) => [c, q.lsn]));
    return v || vb ? { ...(v && { v }), ...(vb && { vb }) } : undefined;
  }

  /**
   * The replica's digest of each collection it holds whole, with the LSN it stands at: compared
   * with the hub's answer whatever is applied meanwhile (at connect, a pull may rewrite the
   * collection before the answer comes — a snapshot would put back a row the card lost, unseen).
   */
  #capture(): Map<string, { lsn: number; digest: number }> {
    const question = new Map<string, { lsn: number; digest: number }>();
    for (const [collection, lsn] of Object.entries(this.store.replica.cursors())) {
      if (this.options.verifiable(collection)) question.set(collection, { lsn, digest: this.store.replica.digest(collection) });
    }
    return question;
  }

  #onDigests([, message]: DigestsMessage): void {
    const question = this.#question;
    this.#question = undefined;
    for (const [collection, lsn, digest] of message.ds) {
      const asked = question?.get(collection);
      if (asked && asked.lsn === lsn) this.#compare(collection, lsn, digest, asked.digest, 'digest');
    }
    this.#buckets.onDigests(message.bs ?? []);
  }
}
