import type { Logger } from 'pino';
import { MAX_RANGE_DEPTH } from '../shared/digest.js';
import {
  MAX_RANGES,
  MAX_SUB_RANGES,
  type Change,
  type RangeSumsMessage,
  type RefetchedMessage,
  type UpMessage,
} from '../shared/messages.js';
import type { AgentStore } from './store/agent-store.js';
import type { BucketRepaired } from './store/bucket-repair.js';
import type { RangeRepaired } from './store/range-repair.js';
import type { RangeDigests } from './store/replica-digests.js';
import type { RepairCause, VerificationBook } from './verification-book.js';

/** What a repair puts back: an unscoped collection held whole, or one bucket of a scoped collection. */
export interface RepairSubject {
  collection: string;
  bucket?: string;
}

export interface RangeRepairerDelegate {
  send(message: UpMessage): boolean;
  /** A repair rewrote these documents (as the hub has them) and removed these (the hub has none). */
  onRepaired(collection: string, written: Change[], removed: Array<{ collection: string; key: string }>): void;
  /** A repair ended (`verifyNow`: verify the repaired copy at once) or was given up: the copy is to be verified again. */
  onEnded(verifyNow: boolean): void;
}

/** A range answered with at most this many documents is fetched whole rather than narrowed further. */
const LEAF_DOCUMENTS = 16;
/** Past this share of the collection differing, a refetch of all of it costs less than narrowing. */
const WHOLE_COLLECTION_SHARE = 0.5;
/** A subject repaired again and again waits this long (doubling, up to 64 times) before the next repair: no loop eats the link. */
const REPAIR_BACKOFF_MS = 10_000;
/** How many times a repair's question is asked before the repair is given up. */
export const MAX_TRIES = 5;

export type Step = { kind: 'ranges'; d: number; ps: number[]; bits: number } | { kind: 'refetch'; d: number; ps: number[]; after?: string };

interface Repair {
  subject: RepairSubject;
  cause: RepairCause;
  steps: Step[];
  documents: number;
  bytes: number;
  /**
   * The newest version it wrote: until the subject is applied past it, the copy holds those
   * documents ahead of its cursor and cannot be compared at the cursor.
   */
  lsn: number;
}

/** One key per subject (a bucket is of one collection: its id says which subject it is). */
export const subjectKey = (s: RepairSubject): string => (s.bucket === undefined ? `c:${s.collection}` : `b:${s.bucket}`);

/**
 * Repairs what verifying found to differ, by key ranges (see docs/ARCHITECTURE.md, Verification
 * and repair): the hub's digests of the subject's 256 ranges, then of the sub-ranges of those that
 * differ, until a range holds a few documents; then just those ranges' documents are fetched
 * again, rewriting what differs and removing what the hub does not have. A bucket's repair asks
 * the same questions with `b`, over the bucket's documents only. One repair at a time per lane,
 * one question at a time to the hub; a subject repaired again without a match since backs off.
 */
export class RangeRepairer {
  readonly #queue: Repair[] = [];
  #active: Repair | undefined;
  #asked: { id: number; step: Step; sentAt: number; tries: number } | undefined;
  #nextId = Math.floor(Math.random() * 1_000_000_000);
  /** Per subject: the LSN the last repair's answers were as of, and how many repairs ran without a match since. */
  readonly #repaired = new Map<string, { lsn: number; streak: number; at: number }>();

  constructor(
    private readonly store: AgentStore,
    private readonly book: VerificationBook,
    private readonly delegate: RangeRepairerDelegate,
    private readonly options: { partition: string; answerTimeoutMs: number },
    private readonly log: Logger,
  ) {}

  /** Subjects being repaired (or waiting to be). */
  get repairing(): RepairSubject[] {
    return [...(this.#active ? [this.#active] : []), ...this.#queue].map((r) => r.subject);
  }

  /** Whether a repair of the subject is under way or waiting. */
  busy(subject: RepairSubject): boolean {
    const key = subjectKey(subject);
    return this.repairing.some((s) => subjectKey(s) === key);
  }

  /** Whether the copy of the subject compares at `lsn`: a repair's answers newer than that are not applied past yet. */
  settledAt(subject: RepairSubject, lsn: number): boolean {
    return (this.#repaired.get(subjectKey(subject))?.lsn ?? 0) <= lsn;
  }

  /** The subject's copy matched the hub's: the next repair of it starts without backing off. */
  matched(subject: RepairSubject): void {
    this.#repaired.delete(subjectKey(subject));
  }

  /** Repairs a subject whose copy differs, from its top range down (or by `steps`, a scrub's keys). */
  enqueue(subject: RepairSubject, cause: RepairCause, steps: Step[] = [{ kind: 'ranges', d: 0, ps: [0], bits: 8 }]): void {
    if (this.busy(subject) && cause !== 'scrub') return;
    this.#queue.push({ subject, cause, steps, documents: 0, bytes: 0, lsn: 0 });
    if (!this.#active) this.#startNext();
  }

  onConnected(): void {
    if (this.#asked) this.#send(this.#asked.step);
  }

  /** Asks again what was not answered in time, gives up what never is, starts what waited out its backoff. */
  tick(now = Date.now()): void {
    if (this.#asked && now - this.#asked.sentAt > this.options.answerTimeoutMs) {
      if (this.#asked.tries < MAX_TRIES) this.#send(this.#asked.step);
      else this.#abandon();
    }
    if (!this.#active) this.#startNext();
  }

  onRangeSums([, answer]: RangeSumsMessage, bytes: number): void {
    const repair = this.#answered(answer.id, answer.c, answer.b, bytes);
    if (!repair) return;
    const local = this.#rangeDigests(repair.subject, answer.d, answer.ps, answer.bits);
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
      this.#recount(repair.subject);
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

  onRefetched([, page]: RefetchedMessage, bytes: number): void {
    const repair = this.#answered(page.id, page.c, page.b, bytes);
    if (!repair) return;
    const window = { after: page.after, through: page.next };
    const bucket = repair.subject.bucket;
    const {
      written,
      removed,
      untagged = [],
    }: RangeRepaired & Partial<BucketRepaired> = bucket === undefined
      ? this.store.replica.repairRanges(page.c, page.d, page.ps, page.docs, window, page.lsn)
      : this.store.bucketRepair.repair(this.options.partition, page.c, bucket, page.d, page.ps, page.docs, window, page.lsn);
    repair.documents += written.length + removed.length + untagged.length;
    if (written.length + removed.length > 0) {
      const rewritten = new Set(written.map((w) => w.key));
      const changes = page.docs.filter((d) => rewritten.has(d.k));
      for (const change of changes) repair.lsn = Math.max(repair.lsn, change.lsn);
      this.delegate.onRepaired(page.c, changes, removed);
    }
    if (page.next !== undefined) repair.steps.unshift({ kind: 'refetch', d: page.d, ps: page.ps, after: page.next });
    this.#continue();
  }

  #rangeDigests(subject: RepairSubject, depth: number, parents: readonly number[], bits: number): RangeDigests {
    return subject.bucket === undefined
      ? this.store.replica.rangeDigests(subject.collection, depth, parents, bits)
      : this.store.bucketDigests.rangeDigests(subject.collection, subject.bucket, depth, parents, bits);
  }

  #recount(subject: RepairSubject): void {
    if (subject.bucket === undefined) this.store.replica.recountDigest(subject.collection);
    else this.store.bucketDigests.recount(subject.bucket);
  }

  /** The repair an answer belongs to, once it is the one asked for (a late or repeated answer is ignored). */
  #answered(id: number, collection: string, bucket: string | undefined, bytes: number): Repair | undefined {
    const repair = this.#active;
    if (!this.#asked || this.#asked.id !== id || !repair) return undefined;
    if (repair.subject.collection !== collection || repair.subject.bucket !== bucket) return undefined;
    this.#asked = undefined;
    repair.bytes += bytes;
    return repair;
  }

  #startNext(): void {
    const now = Date.now();
    const index = this.#queue.findIndex((r) => {
      const last = this.#repaired.get(subjectKey(r.subject));
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
    // written, and rewriting the row moved it by the difference. Recounted from the rows, it is true
    // again. (A bucket's: the other buckets such a row is in are recounted when their check finds them off.)
    if (repair.cause === 'scrub') this.#recount(repair.subject);
    this.#ended(repair);
    this.book.repaired(repair.cause, repair.documents, repair.bytes);
    const { collection, bucket } = repair.subject;
    this.log.warn(
      { partition: this.options.partition, collection, bucket, cause: repair.cause, documents: repair.documents, bytes: repair.bytes },
      bucket === undefined ? "repaired this device's copy of a collection" : "repaired this device's copy of a scope bucket",
    );
    this.delegate.onEnded(true);
    this.#startNext();
  }

  #ended(repair: Repair): void {
    const key = subjectKey(repair.subject);
    const last = this.#repaired.get(key);
    this.#repaired.set(key, { lsn: repair.lsn, streak: (last?.streak ?? 0) + 1, at: Date.now() });
  }

  /**
   * The hub did not answer a repair's question, asked MAX_TRIES times while connected (it refused
   * it, say: the collection became scoped, the bucket left the device's scope): the repair is given
   * up, and the next mismatch starts another after the backoff.
   */
  #abandon(): void {
    const repair = this.#active!;
    this.#asked = undefined;
    this.#active = undefined;
    this.#ended(repair);
    this.log.error(
      { partition: this.options.partition, ...repair.subject, tries: MAX_TRIES },
      'the hub did not answer a repair; giving it up until the next check finds it again',
    );
    this.delegate.onEnded(false);
    this.#startNext();
  }

  #send(step: Step): void {
    const { subject } = this.#active!;
    const again = this.#asked?.step === step ? this.#asked : undefined;
    const id = again?.id ?? this.#nextId++;
    const { kind, d, ps } = step;
    const b = subject.bucket === undefined ? {} : { b: subject.bucket };
    const sent =
      kind === 'ranges'
        ? this.delegate.send(['ranges', { id, c: subject.collection, d, ps, bits: step.bits, ...b }])
        : this.delegate.send([
            'refetch',
            { id, c: subject.collection, d, ps, ...(step.after !== undefined && { after: step.after }), ...b },
          ]);
    // Offline, a question that could not go out is not a try: it goes again once connected.
    this.#asked = { id, step, sentAt: Date.now(), tries: (again?.tries ?? 0) + (sent ? 1 : 0) };
  }
}
