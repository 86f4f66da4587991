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
  sendDown(agentId: string, message: DownMessage): number;
  superseded(agentId: string): void;
  log: Logger;
}

/**
 * The hub's side of verifying a device's copy: its digests at the LSNs a status report names
 * (the quiet device's check), and range repair's answers — sub-range digests (`rangesums`) and
 * the documents of the ranges that differ (`refetched`). Each answer is read from the store as it
 * is now: the device compares what it holds at the answer's LSN. Range answers are paced per
 * agent (PacedQueue): each scans the collection's keys.
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
   * Answers a status report that asks to verify (`v`): the hub's digest of each collection it
   * names, at the LSN it gives. A collection whose digest at that LSN the
   * store no longer knows is left out (the device verifies it later, or through a change set).
   */
  async answerStatus(agentId: string, status: StatusMessage[1]): Promise<void> {
    const { store, clock } = this.context;
    const ds: Array<[string, number, number]> = [];
    for (const [collection, lsn] of Object.entries(status.v ?? {})) {
      if (!this.context.mayVerify(agentId, collection)) continue;
      const digest = await store.digestAt(collection, lsn);
      if (digest !== undefined) ds.push([collection, lsn, digest]);
    }
    this.context.sendDown(agentId, ['digests', { hlc: clock.tick(), ds }]);
  }

  async #answer(agentId: string, message: RangesMessage | RefetchMessage): Promise<number> {
    const [type, ask] = message;
    const { store, clock } = this.context;
    const sendDown = (id: string, m: DownMessage): number => this.context.sendDown(id, m);
    const refuse = (text: string): number => {
      sendDown(agentId, ['error', { code: ErrorCode.INVALID_REQUEST, message: text }]);
      return SCANNED_DOCUMENT_COST;
    };
    if (!this.context.mayVerify(agentId, ask.c)) {
      return refuse(`collection ${ask.c} cannot be range-repaired by this device: it may not read it, or holds it by scope`);
    }
    try {
      if (type === 'ranges') {
        const { bits } = message[1];
        if (ask.d + bits > 32 || ask.ps.length * 2 ** bits > MAX_SUB_RANGES) {
          return refuse(`ask for at most ${MAX_SUB_RANGES} sub-ranges, of depth 32 at most`);
        }
        const { lsn, digests, counts } = await store.rangeDigests(ask.c, ask.d, ask.ps, bits);
        const sent = sendDown(agentId, [
          'rangesums',
          { id: ask.id, c: ask.c, lsn, hlc: clock.tick(), d: ask.d, ps: ask.ps, bits, ds: digests, ns: counts },
        ]);
        return sent + SCANNED_DOCUMENT_COST * counts.flat().reduce((sum, n) => sum + n, 0);
      }
      const after = message[1].after;
      const page = await store.rangeDocuments(ask.c, ask.d, ask.ps, after, REFETCH_PAGE_LIMIT, limits.maxMessageBytes / 2);
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
