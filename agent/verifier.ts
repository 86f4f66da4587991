import type { Logger } from 'pino';
import { keyPosition, MAX_RANGE_DEPTH } from '../shared/digest.js';
import {
  MAX_RANGES,
  MAX_SUB_RANGES,
  type Change,
  type DigestsMessage,
  type RangeSumsMessage,
  type RefetchedMessage,
  type UpMessage,
} from '../shared/messages.js';
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
  /** Whether the device holds the collection whole (replicated, unscoped, of this lane): only those are verified. */
  verifiable(collection: string): boolean;
  /** Ask the hub for its digests this often when nothing else did (a quiet device). */
  verifyIntervalMs: number;
  /** Ask again when an answer has not come within this time. */
  answerTimeoutMs: number;
}

/** A range answered with at most this many documents is fetched whole rather than narrowed further. */
const LEAF_DOCUMENTS = 16;
/** Past this share of the collection differing, a refetch of all of it costs less than narrowing. */
const WHOLE_COLLECTION_SHARE = 0.5;
/** A collection repaired again and again waits this long (doubling, up to 64 times) before the next repair: no loop eats the link. */
const REPAIR_BACKOFF_MS = 10_000;
/** How many times a repair's question is asked before the repair is given up. */
const MAX_TRIES = 5;

type Step = { kind: 'ranges'; d: number; ps: number[]; bits: number } | { kind: 'refetch'; d: number; ps: number[]; after?: string };

interface Repair {
  collection: string;
  cause: RepairCause;
  steps: Step[];
  documents: number;
  bytes: number;
  /**
   * The newest version it wrote: until the collection is applied past it, the copy holds those
   * documents ahead of its cursor and cannot be compared at the cursor.
   */
  lsn: number;
}

/**
 * Verifies this lane's copy of the collections it holds whole, and repairs what differs.
 *
 * Verifying compares the replica's digest of a collection (agent/store) with the hub's at the
 * same LSN: after applying a change set or page that carries one (a mismatch there means a
 * change was missed on the way: cause `hole`), and for a quiet device through its status report,
 * which asks the hub for its digests when due (cause `digest`). A scrub's rotten rows come in
 * by key (cause `scrub`).
 *
 * Repairing narrows a mismatch down by key ranges: the hub's digests of the collection's 256
 * ranges, then of the sub-ranges of those that differ, until a range holds a few documents; then
 * it refetches just those ranges' documents, rewriting what differs and removing what the hub
 * does not have. The pending writes in the outbox are never touched. One repair at a time per
 * lane, one question at a time to the hub.
 */
export class Verifier {
  #due = true;
  /** The digests a status report asked the hub to compare, until it answers (see `question`). */
  #question: Map<string, { lsn: number; digest: number }> | undefined;
  readonly #queue: Repair[] = [];
  #active: Repair | undefined;
  #asked: { id: number; step: Step; sentAt: number; tries: number } | undefined;
  #nextId = Math.floor(Math.random() * 1_000_000_000);
  /** Per collection: the LSN the last repair's answers were as of, and how many repairs ran without a match since. */
  readonly #repaired = new Map<string, { lsn: number; streak: number; at: number }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: AgentStore,
    private readonly book: VerificationBook,
    private readonly delegate: VerifierDelegate,
    private readonly options: VerifierOptions,
    private readonly log: Logger,
  ) {}

  /** Collections being repaired (or waiting to be). */
  get repairing(): string[] {
    return [...(this.#active ? [this.#active] : []), ...this.#queue].map((r) => r.collection);
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
    this.#lastDueAt = Date.now();
    if (this.#asked) this.#send(this.#asked.step);
  }

  #lastDueAt = Date.now();

  #tick(): void {
    const now = Date.now();
    if (now - this.#lastDueAt >= this.options.verifyIntervalMs) {
      this.#lastDueAt = now;
      this.#due = true;
      this.delegate.requestStatus();
    }
    if (this.#asked && now - this.#asked.sentAt > this.options.answerTimeoutMs) {
      if (this.#asked.tries < MAX_TRIES) this.#send(this.#asked.step);
      else this.#abandon();
    }
    if (!this.#active) this.#startNext();
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

  /** The hub's digest of a collection at `lsn` against the replica's (`held`) at the same LSN; false if it could not be compared. */
  #compare(collection: string, lsn: number, digest: number, held: number, cause: RepairCause): boolean {
    if (!this.options.verifiable(collection) || this.repairing.includes(collection)) return false;
    if ((this.#repaired.get(collection)?.lsn ?? 0) > lsn) return false;
    if (held === digest) {
      this.book.verified(lsn);
      this.#repaired.delete(collection);
      return true;
    }
    this.log.warn(
      { partition: this.options.partition, collection, lsn, cause },
      "this device's copy of a collection differs from the hub's; repairing it by key ranges",
    );
    this.book.found();
    this.#enqueue({ collection, cause, steps: [{ kind: 'ranges', d: 0, ps: [0], bits: 8 }], documents: 0, bytes: 0, lsn: 0 });
    return true;
  }

  /** Rows whose stored bytes no longer match their hash (the scrub found them): refetched by key. */
  repairKeys(collection: string, keys: readonly string[]): void {
    this.book.found(keys.length);
    if (!this.options.verifiable(collection)) {
      this.log.error(
        { collection, keys: keys.slice(0, 10) },
        'rows of a collection held by scope are damaged; they are fetched again only when the bucket is',
      );
      return;
    }
    const ps = [...new Set(keys.map(keyPosition))];
    const steps: Step[] = [];
    for (let i = 0; i < ps.length; i += MAX_RANGES) steps.push({ kind: 'refetch', d: MAX_RANGE_DEPTH, ps: ps.slice(i, i + MAX_RANGES) });
    this.#enqueue({ collection, cause: 'scrub', steps, documents: 0, bytes: 0, lsn: 0 });
  }

  /** The hub's answer to a status report that asked to verify, or to a repair's question; `bytes` its size on the wire. */
  onMessage(message: DigestsMessage | RangeSumsMessage | RefetchedMessage, bytes: number): void {
    if (message[0] === 'digests') this.#onDigests(message);
    else if (message[0] === 'rangesums') this.#onRangeSums(message, bytes);
    else this.#onRefetched(message, bytes);
  }

  /**
   * What the next status report asks the hub to verify (`v`): each collection held whole at the
   * LSN its digest was taken; undefined when no check is due. The question stands until answered.
   */
  question(): Record<string, number> | undefined {
    if (!this.#question && this.#due) this.#question = this.#capture();
    this.#due = false;
    return this.#question && Object.fromEntries([...this.#question].map(([c, q]) => [c, q.lsn]));
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
  }

  #onRangeSums([, answer]: RangeSumsMessage, bytes: number): void {
    const repair = this.#answered(answer.id, answer.c, bytes);
    if (!repair) return;
    const local = this.store.replica.rangeDigests(answer.c, answer.d, answer.ps, answer.bits);
    const depth = answer.d + answer.bits;
    const differing: Array<{ range: number; count: number }> = [];
    let total = 0;
    let differingDocs = 0;
    answer.ps.forEach((parent, i) => {
      answer.ds[i]!.forEach((digest, child) => {
        const count = answer.ns[i]![child]!;
        total += count;
        if (local.digests[i]![child] === digest) return;
        differing.push({ range: parent * 2 ** answer.bits + child, count: Math.max(count, local.counts[i]![child]!) });
        differingDocs += count;
      });
    });
    if (answer.d === 0 && differing.length === 0) {
      // Every row matches the hub's: the stored digest itself was what differed.
      this.store.replica.recountDigest(answer.c);
    } else if (answer.d === 0 && differingDocs > total * WHOLE_COLLECTION_SHARE) {
      repair.steps.unshift({ kind: 'refetch', d: 0, ps: [0] });
    } else {
      const leaves = differing.filter((r) => r.count <= LEAF_DOCUMENTS || depth === MAX_RANGE_DEPTH).map((r) => r.range);
      const wide = differing.filter((r) => r.count > LEAF_DOCUMENTS && depth < MAX_RANGE_DEPTH);
      for (let i = 0; i < leaves.length; i += MAX_RANGES)
        repair.steps.unshift({ kind: 'refetch', d: depth, ps: leaves.slice(i, i + MAX_RANGES) });
      if (wide.length > 0) {
        const most = Math.max(...wide.map((r) => r.count));
        // Deep enough that a sub-range holds about half a leaf: most of the sub-ranges that differ are then leaves.
        const bits = Math.min(8, MAX_RANGE_DEPTH - depth, Math.max(1, Math.ceil(Math.log2((2 * most) / LEAF_DOCUMENTS))));
        const per = Math.max(1, Math.floor(MAX_SUB_RANGES / 2 ** bits));
        for (let i = 0; i < wide.length; i += per)
          repair.steps.unshift({ kind: 'ranges', d: depth, ps: wide.slice(i, i + per).map((r) => r.range), bits });
      }
    }
    this.#continue();
  }

  #onRefetched([, page]: RefetchedMessage, bytes: number): void {
    const repair = this.#answered(page.id, page.c, bytes);
    if (!repair) return;
    const { written, removed } = this.store.replica.repairRanges(
      page.c,
      page.d,
      page.ps,
      page.docs,
      { after: page.after, through: page.next },
      page.lsn,
    );
    repair.documents += written.length + removed.length;
    if (written.length + removed.length > 0) {
      const rewritten = new Set(written.map((w) => w.key));
      const changes = page.docs.filter((d) => rewritten.has(d.k));
      for (const change of changes) repair.lsn = Math.max(repair.lsn, change.lsn);
      this.delegate.onRepaired(page.c, changes, removed);
    }
    if (page.next !== undefined) repair.steps.unshift({ kind: 'refetch', d: page.d, ps: page.ps, after: page.next });
    this.#continue();
  }

  /** The repair an answer belongs to, once it is the one asked for (a late or repeated answer is ignored). */
  #answered(id: number, collection: string, bytes: number): Repair | undefined {
    const repair = this.#active;
    if (!this.#asked || this.#asked.id !== id || !repair || repair.collection !== collection) return undefined;
    this.#asked = undefined;
    repair.bytes += bytes;
    return repair;
  }

  #enqueue(repair: Repair): void {
    if (this.repairing.includes(repair.collection) && repair.cause !== 'scrub') return;
    this.#queue.push(repair);
    if (!this.#active) this.#startNext();
  }

  #startNext(): void {
    const now = Date.now();
    const index = this.#queue.findIndex((r) => {
      const last = this.#repaired.get(r.collection);
      return !last || now - last.at >= REPAIR_BACKOFF_MS * 2 ** Math.min(6, last.streak - 1);
    });
    if (index < 0) return;
    this.#active = this.#queue.splice(index, 1)[0]!;
    this.#continue();
  }

  /** Asks the next question of the active repair, or ends it. */
  #continue(): void {
    const repair = this.#active;
    if (!repair) return;
    const step = repair.steps.shift();
    if (step) {
      this.#send(step);
      return;
    }
    this.#active = undefined;
    // A hash that rotted in its row moved no trigger: the digest still counts the hash as it was
    // written, and rewriting the row moved it by the difference. Recounted from the rows, it is true again.
    if (repair.cause === 'scrub') this.store.replica.recountDigest(repair.collection);
    const last = this.#repaired.get(repair.collection);
    this.#repaired.set(repair.collection, { lsn: repair.lsn, streak: (last?.streak ?? 0) + 1, at: Date.now() });
    this.book.repaired(repair.cause, repair.documents, repair.bytes);
    this.log.warn(
      {
        partition: this.options.partition,
        collection: repair.collection,
        cause: repair.cause,
        documents: repair.documents,
        bytes: repair.bytes,
      },
      "repaired this device's copy of a collection",
    );
    // Verify the repaired copy as soon as it is applied past the repair's answers.
    this.#due = true;
    this.delegate.requestStatus();
    this.#startNext();
  }

  /**
   * The hub did not answer a repair's question, asked MAX_TRIES times while connected (it refused
   * it, say: the collection became scoped): the repair is given up, and the next mismatch starts
   * another after the backoff.
   */
  #abandon(): void {
    const repair = this.#active!;
    this.#asked = undefined;
    this.#active = undefined;
    const last = this.#repaired.get(repair.collection);
    this.#repaired.set(repair.collection, { lsn: repair.lsn, streak: (last?.streak ?? 0) + 1, at: Date.now() });
    this.log.error(
      { partition: this.options.partition, collection: repair.collection, tries: MAX_TRIES },
      'the hub did not answer a repair of this collection; giving it up until the next check finds it again',
    );
    this.#due = true;
    this.#startNext();
  }

  #send(step: Step): void {
    const repair = this.#active!;
    const again = this.#asked?.step === step ? this.#asked : undefined;
    const id = again?.id ?? this.#nextId++;
    const { kind, d, ps } = step;
    const sent =
      kind === 'ranges'
        ? this.delegate.send(['ranges', { id, c: repair.collection, d, ps, bits: step.bits }])
        : this.delegate.send(['refetch', { id, c: repair.collection, d, ps, ...(step.after !== undefined && { after: step.after }) }]);
    // Offline, a question that could not go out is not a try: it goes again once connected.
    this.#asked = { id, step, sentAt: Date.now(), tries: (again?.tries ?? 0) + (sent ? 1 : 0) };
  }
}
