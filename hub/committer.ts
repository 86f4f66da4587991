import type { Logger } from 'pino';
import type { BatchMessage } from '../shared/messages.js';
import type { BatchRequest, IngestOutput, Ingestor } from './ingest.js';

/**
 * Group commit: batches that arrive while the event loop is busy are ingested together, in
 * arrival order, in one transaction. Replies and change sets are handed to `publish` only
 * after that transaction has committed.
 *
 *   enqueue ─► queued ─(next turn of the event loop)─► ingest (one txn) ─► publish
 */
export class Committer {
  #queue: BatchRequest[] = [];
  #scheduled = false;
  #stopped = false;

  constructor(
    private readonly ingestor: Ingestor,
    private readonly publish: (output: IngestOutput) => void,
    private readonly onFailure: (agentIds: string[], error: Error) => void,
    private readonly log: Logger,
  ) {}

  enqueue(agentId: string, batch: BatchMessage[1]): void {
    if (this.#stopped) return;
    this.#queue.push({ agentId, batch });
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#drain());
    }
  }

  #drain(): void {
    this.#scheduled = false;
    const requests = this.#queue;
    this.#queue = [];
    if (requests.length === 0 || this.#stopped) return;
    let output: IngestOutput;
    try {
      output = this.ingestor.ingest(requests);
    } catch (error) {
      // Nothing was committed; the agents keep their outbox rows and resend.
      this.log.error({ err: error, batches: requests.length }, 'commit failed; agents will retry');
      this.onFailure([...new Set(requests.map((r) => r.agentId))], error as Error);
      return;
    }
    this.publish(output);
  }

  /** Commits what is queued, then accepts nothing more. */
  drain(): void {
    this.#drain();
    this.#stopped = true;
  }
}
