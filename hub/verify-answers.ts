import type { Logger } from 'pino';
import { ErrorCode } from '../shared/errors.js';
import type { HybridClock } from '../shared/hlc.js';
import { limits } from '../shared/limits.js';
import { MAX_SUB_RANGES, type DownMessage, type RangesMessage, type RefetchMessage, type StatusMessage } from '../shared/messages.js';
import { PacedQueue } from './paced-queue.js';
import type { HubStore } from './store/hub-store.js';

/** Range-repair reads per agent per second, in bytes (with as much saved up): a repair is rare, and scans a collection's keys. */
export const DEFAULT_REPAIR_BYTES_PER_SECOND = 8 * 1024 * 1024;
/** What scanning one document's key and hash costs from that budget. */
const SCANNED_DOCUMENT_COST = 48;
/** The most documents one `refetched` page holds. */
const REFETCH_PAGE_LIMIT = 500;

export interface VerifyAnswersContext {
  store: HubStore;
  clock: HybridClock;
  /** Whether the agent may read the collection, and it is one it holds whole (unscoped). */
  mayVerify(agentId: string, collection: string): boolean;
  /** Whether the agent holds a bucket of its scope (the check its bucket pulls pass). */
  holdsBucket(agentId: string, bucket: string): boolean;
  /** The collection of a bucket the agent holds; undefined if it holds no such bucket. */
  bucketCollection(agentId: string, bucket: string): string | undefined;
  sendDown(agentId: string, message: DownMessage): number;
  superseded(agentId: string): void;
  log: Logger;
}

/**
 * The hub's side of verifying a device's copy: its digests at the LSNs a status report names
 * (the quiet device's check), and range repair's answers — sub-range digests (`rangesums`) and
 * the documents of the ranges that differ (`refetched`). Each answer is read from the store as it
 * is now: the device compares what it holds at the answer's LSN. Range answers are paced per
 * agent (PacedQueue): each scans the collection's keys, or one bucket's (`b`) through its index.
 * A scoped collection is verified by bucket only, each a bucket the device holds.
 */
export class VerifyAnswers {
  readonly #queue: PacedQueue<RangesMessage | RefetchMessage>;

  constructor(
    private readonly context: VerifyAnswersContext,
    bytesPerSecond = DEFAULT_REPAIR_BYTES_PER_SECOND,
  ) {
    this.#queue = new PacedQueue(
      (agentId, message) => this.#answer(agentId, message),
      { rate: bytesPerSecond, burst: bytesPerSecond },
      (agentId) => context.superseded(agentId),
    );
  }

  submit(agentId: string, message: RangesMessage | RefetchMessage): void {
    this.#queue.submit(agentId, message);
  }

  stop(): void {
    this.#queue.stop();
  }

  /**
   * Answers a status report that asks to verify (`v`, `vb`): the hub's digest of each collection
   * it names, at the LSN it gives. A collection whose digest at that LSN the
   * store no longer knows is left out (the device verifies it later, or through a change set).
   * Of each bucket it names that the device holds, the bucket's digest now, if its head is at or
   * below the LSN given: the hub keeps a bucket's digest now only, not at every LSN.
   */
  async answerStatus(agentId: string, status: StatusMessage[1]): Promise<void> {
    const { store, clock } = this.context;
    const ds: Array<[string, number, number]> = [];
    for (const [collection, lsn] of Object.entries(status.v ?? {})) {
      if (!this.context.mayVerify(agentId, collection)) continue;
      const digest = await store.digestAt(collection, lsn);
      if (digest !== undefined) ds.push([collection, lsn, digest]);
    }
    const asked = Object.entries(status.vb ?? {}).filter(([bucket]) => this.context.holdsBucket(agentId, bucket));
    const bs: Array<[string, number, number]> = [];
    if (asked.length > 0) {
      const now = await store.bucketDigests(asked.map(([bucket]) => bucket));
      for (const [bucket, lsn] of asked) {
        const { head, digest } = now.get(bucket) ?? { head: 0, digest: 0 }; // never written: empty
        if (head <= lsn) bs.push([bucket, lsn, digest]);
      }
    }
    this.context.sendDown(agentId, ['digests', { hlc: clock.tick(), ds, ...(status.vb && { bs }) }]);
  }

  async #answer(agentId: string, message: RangesMessage | RefetchMessage): Promise<number> {
    const [type, ask] = message;
    const { store, clock } = this.context;
    const sendDown = (id: string, m: DownMessage): number => this.context.sendDown(id, m);
    const refuse = (text: string): number => {
      sendDown(agentId, ['error', { code: ErrorCode.INVALID_REQUEST, message: text }]);
      return SCANNED_DOCUMENT_COST;
    };
    const bucket = ask.b;
    if (bucket === undefined && !this.context.mayVerify(agentId, ask.c)) {
      return refuse(`collection ${ask.c} cannot be range-repaired by this device: it may not read it, or holds it by scope`);
    }
    if (bucket !== undefined && this.context.bucketCollection(agentId, bucket) !== ask.c) {
      return refuse(`bucket ${bucket} cannot be range-repaired by this device: it does not hold it, or it is not of ${ask.c}`);
    }
    const echo = bucket === undefined ? {} : { b: bucket };
    try {
      if (type === 'ranges') {
        const { bits } = message[1];
        if (ask.d + bits > 32 || ask.ps.length * 2 ** bits > MAX_SUB_RANGES) {
          return refuse(`ask for at most ${MAX_SUB_RANGES} sub-ranges, of depth 32 at most`);
        }
        const { lsn, digests, counts } = await store.rangeDigests(ask.c, ask.d, ask.ps, bits, bucket);
        const sent = sendDown(agentId, [
          'rangesums',
          { id: ask.id, c: ask.c, lsn, hlc: clock.tick(), d: ask.d, ps: ask.ps, bits, ds: digests, ns: counts, ...echo },
        ]);
        return sent + SCANNED_DOCUMENT_COST * counts.flat().reduce((sum, n) => sum + n, 0);
      }
      const after = message[1].after;
      const page = await store.rangeDocuments({
        collection: ask.c,
        depth: ask.d,
        ranges: ask.ps,
        after,
        limit: REFETCH_PAGE_LIMIT,
        maxBytes: limits.maxMessageBytes / 2,
        bucket,
      });
      const sent = sendDown(agentId, [
        'refetched',
        {
          id: ask.id,
          c: ask.c,
          lsn: page.lsn,
          hlc: clock.tick(),
          d: ask.d,
          ps: ask.ps,
          ...(after !== undefined && { after }),
          docs: page.docs,
          ...(page.next !== undefined && { next: page.next }),
          ...echo,
        },
      ]);
      return Math.max(sent, page.readBytes);
    } catch (error) {
      this.context.log.error({ err: error, agentId, type }, 'could not answer a range repair');
      sendDown(agentId, [
        'error',
        { code: ErrorCode.STORAGE_FAILED, message: `hub could not read its store: ${(error as Error).message}` },
      ]);
      return SCANNED_DOCUMENT_COST;
    }
  }
}
