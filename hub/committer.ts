import type { Logger } from 'pino';
import type { BatchMessage } from '../shared/messages.js';
import { faultPoint } from '../shared/fault-points.js';
import type { HubWriteRequest, IngestOutput, IngestRequest, Ingestor, ReapplyRequest, WriteResult } from './ingest.js';
import { HubStoppingError } from '../shared/errors.js';

interface Waiter {
  resolve: (result: WriteResult) => void;
  reject: (error: Error) => void;
}

/**
 * Group commit: batches and hub writes that arrive while the event loop is busy are ingested
 * together, in arrival order, in one transaction. Replies and change sets are handed to
 * `publish` only after that transaction has committed.
 *
 *   enqueue ─► queued ─(next turn, or when the commit under way ends)─► ingest (one txn) ─► publish ─► resolve hub writes
 */
export class Committer {
  #queue: IngestRequest[] = [];
  #waiters: Waiter[] = [];
  #scheduled = false;
  /** A group commit is under way: group commits run one at a time, in order. */
  #committing = false;
  #stopped = false;

  constructor(
    private readonly ingestor: Ingestor,
    /** Called after each commit, with how many requests it held and how long it took. */
    private readonly publish: (output: IngestOutput, requests: number, seconds: number) => void,
    private readonly onFailure: (agentIds: string[], error: Error) => void,
    private readonly log: Logger,
  ) {}

  enqueueBatch(agentId: string, batch: BatchMessage[1]): void {
    if (this.#stopped) return;
    this.#push({ kind: 'batch', agentId, batch });
  }

  /** A write made at the hub; resolves with its outcome once committed. */
  write(write: HubWriteRequest['write']): Promise<WriteResult> {
    if (this.#stopped) return Promise.reject(new HubStoppingError());
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#push({ kind: 'hub', write });
    });
  }

  /** A lost write committed again with its origin and timestamp; resolves with its outcome once committed. */
  reapply(write: ReapplyRequest['write']): Promise<WriteResult> {
    if (this.#stopped) return Promise.reject(new HubStoppingError());
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#push({ kind: 'reapply', write });
    });
  }

  #push(request: IngestRequest): void {
    this.#queue.push(request);
    this.#schedule();
  }

  /** The next group commit starts on the next turn, or once the one under way has finished. */
  #schedule(): void {
    if (this.#scheduled || this.#committing) return;
    this.#scheduled = true;
    setImmediate(() => void this.#drain());
  }

  async #drain(): Promise<void> {
    this.#scheduled = false;
    const requests = this.#queue;
    const waiters = this.#waiters;
    this.#queue = [];
    this.#waiters = [];
    if (requests.length === 0) return;
    this.#committing = true;
    let output: IngestOutput;
    const started = process.hrtime.bigint();
    try {
      faultPoint('hub.before-commit');
      output = await this.ingestor.ingest(requests);
    } catch (error) {
      // Nothing was committed; agents keep their outbox rows and resend, hub writers see the error.
      this.log.error({ err: error, requests: requests.length }, 'commit failed');
      const agents = requests.flatMap((r) => (r.kind === 'batch' ? [r.agentId] : []));
      this.onFailure([...new Set(agents)], error as Error);
      for (const w of waiters) w.reject(error as Error);
      return;
    } finally {
      this.#committing = false;
      // What arrived during this commit goes in the next one.
      if (this.#queue.length > 0 && !this.#stopped) this.#schedule();
    }
    faultPoint('hub.after-commit');
    this.publish(output, requests.length, Number(process.hrtime.bigint() - started) / 1e9);
    waiters.forEach((w, i) => w.resolve(output.hubResults[i]!));
  }

  /** Commits what is queued (after the commit under way), then accepts nothing more. */
  async drain(): Promise<void> {
    this.#stopped = true;
    while (this.#committing) await new Promise((resolve) => setImmediate(resolve));
    await this.#drain();
  }
}
