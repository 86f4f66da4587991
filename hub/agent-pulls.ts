import type { Logger } from 'pino';
import { ErrorCode } from '../shared/errors.js';
import type { HybridClock } from '../shared/hlc.js';
import { limits } from '../shared/limits.js';
import type { DownMessage, PageMessage, PullMessage, SnapshotMessage } from '../shared/messages.js';
import { answerBucketPull } from './bucket-pull.js';
import { PacedQueue } from './paced-queue.js';
import { LogPageCache } from './log-page-cache.js';
import { answerPull } from './pull.js';
import type { ScopeDirectory } from './scope-directory.js';
import type { HubStore } from './store/hub-store.js';

/** Catch-up at several times what today's agent applies, yet a bound on a client pulling as fast as it reads. */
export const DEFAULT_PULL_BYTES_PER_SECOND = 32 * 1024 * 1024;

/** What a refused bucket pull costs from the pull budget (a page's worth): it makes the hub read heads and send a scope. */
const REFUSED_PULL_COST = 64 * 1024;

export interface AgentPullsContext {
  store: HubStore;
  clock: HybridClock;
  scopes: ScopeDirectory;
  mayRead(agentId: string, collection: string): boolean;
  sendDown(agentId: string, message: DownMessage): number;
  answered(agentId: string, pull: PullMessage[1], answer: PageMessage | SnapshotMessage): void;
  superseded(agentId: string): void;
  /** A pull of a bucket the agent does not hold: its view of its scope is stale. */
  outOfScope(agentId: string): void;
  log: Logger;
}

/**
 * Agents' pulls, answered one at a time per agent within its byte budget (PacedQueue): a page or
 * snapshot of the partition's unscoped collections, or of one bucket of the agent's scope.
 */
export class AgentPulls {
  readonly #queue: PacedQueue<PullMessage[1]>;
  /** A fleet pulling from one cursor (after a hub restart) shares the pages it reads. */
  readonly #pages: LogPageCache;

  constructor(
    private readonly context: AgentPullsContext,
    bytesPerSecond = DEFAULT_PULL_BYTES_PER_SECOND,
  ) {
    this.#pages = new LogPageCache(context.store);
    this.#queue = new PacedQueue(
      (agentId, pull) => this.#answer(agentId, pull),
      { rate: bytesPerSecond, burst: bytesPerSecond },
      (agentId) => context.superseded(agentId),
    );
  }

  submit(agentId: string, pull: PullMessage[1]): void {
    this.#queue.submit(agentId, pull);
  }

  stop(): void {
    this.#queue.stop();
  }

  /**
   * Answers one pull; returns what it cost: the bytes read or sent, whichever is more (a page of
   * another collection's rows costs the reading even when little of it is the agent's).
   */
  async #answer(agentId: string, pull: PullMessage[1]): Promise<number> {
    const { store, clock, scopes } = this.context;
    const sendDown = (id: string, message: DownMessage): number => this.context.sendDown(id, message);
    let read = 0;
    const onRead = (bytes: number): void => {
      read += bytes;
    };
    const maxBytes = limits.maxMessageBytes / 2;
    const { b: bucket } = pull;
    if (bucket !== undefined && !scopes.holds(agentId, bucket)) {
      // Its labels changed since it was told its scope: it is told again.
      sendDown(agentId, ['error', { code: ErrorCode.OUT_OF_SCOPE, message: `bucket ${bucket} is not in this device's scope` }]);
      this.context.outOfScope(agentId);
      return REFUSED_PULL_COST; // not free: a flood of them is paced like any pull
    }
    try {
      const answer =
        bucket !== undefined
          ? await answerBucketPull(store, clock, { ...pull, b: bucket }, maxBytes, onRead, {
              at: () => store.bucketJoins.joinedAt(agentId, bucket),
              record: (lsn) => store.bucketJoins.record(agentId, bucket, lsn),
              collection: () => scopes.collectionOf(agentId, bucket),
            })
          : await answerPull(
              this.#pages,
              clock,
              pull,
              maxBytes,
              // Scoped collections come by bucket, never in the partition's pages or snapshots.
              (c) => this.context.mayRead(agentId, c) && !scopes.scoped(c),
              onRead,
            );
      const sent = sendDown(agentId, answer);
      this.context.answered(agentId, pull, answer);
      return Math.max(sent, read);
    } catch (error) {
      // The agent asks again after its pull timeout; tell it why meanwhile.
      this.context.log.error({ err: error, agentId }, 'could not answer a pull');
      sendDown(agentId, [
        'error',
        { code: ErrorCode.STORAGE_FAILED, message: `hub could not read its store: ${(error as Error).message}` },
      ]);
      return read;
    }
  }
}
