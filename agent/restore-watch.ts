import type { Logger } from 'pino';
import { limits } from '../shared/limits.js';
import type { HubStatusMessage, LostMessage } from '../shared/messages.js';
import type { AgentStore } from './store/agent-store.js';
import type { LostChunk, Reconciled } from './store/lost-reports.js';

export interface RestoreWatchDelegate {
  send(message: LostMessage): boolean;
  connected(): boolean;
}

/**
 * Notices, per partition, that the hub's database was restored from a backup, and reports what
 * that lost. A hub status with another lineage than the one this device last synced with is a
 * marked restore (`outpost hub restore`), parting at its `fork`. A status newer than the last one
 * heard (a later HLC: the hub publishes it when it starts, with its head then) whose head is
 * below an LSN this device learned of before that status (by the hub clock stored with each
 * LSN) is an unmarked one, parting at that head. (What the device learned only after the status
 * is what that hub committed since: a status delivered late says nothing about the head now.)
 * Either way the partition is reconciled (LostReports.reconcile) and the lost versions are
 * reported, a chunk at a time, each resent until the hub acknowledges it.
 *
 *   status ─restored?─► reconcile (one transaction) ─► report chunk ─lostack─► next chunk … ─► none left
 */
export class RestoreWatch {
  /** The chunk sent and not yet acknowledged, and when it went. */
  #inFlight: { chunk: LostChunk; sentAt: number } | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: AgentStore,
    private readonly partition: string,
    private readonly agentId: string,
    private readonly inPartition: (collection: string) => boolean,
    private readonly delegate: RestoreWatchDelegate,
    private readonly options: { ackTimeoutMs: number },
    private readonly log: Logger,
  ) {}

  /** Reconciles the partition if this status says its hub was restored; what was done, or undefined. */
  onHubStatus(status: HubStatusMessage[1]): Reconciled | undefined {
    const known = this.store.partitions.hubLineageOf(this.partition);
    // Only a status newer than the last one heard counts (HLC order): a duplicate or a late
    // copy of an earlier status (of the lineage before, or with the head of an earlier start) says nothing new.
    if (known !== undefined && status.hlc <= known.statusHlc) return undefined;
    const applied = (): number => this.store.lost.appliedOf(this.partition, this.inPartition, this.store.replica.cursors());
    let fork: number | undefined;
    if (known === undefined) {
      // The first status heard: a new device (nothing applied), or one from before lineages that
      // synced with this database's lineage before its restore, if it holds more than the fork.
      if (status.fork > 0 && applied() > status.fork) fork = status.fork;
    } else if (status.lin !== known.lineage) fork = status.fork;
    // An unmarked restore: a status whose head is below an LSN this device learned of before
    // the status (by the hub clock stored with each LSN, which a restart keeps). An LSN above the
    // head learned only after the status is one that hub committed since: a status delivered
    // late is not news of a restore, nor is a restored hub's status arriving after its first
    // changes proof against one. Only against a status heard before (`known`): the first one a
    // device hears may be the retained status of the hub's start, older than what it applied.
    if (
      fork === undefined &&
      known !== undefined &&
      this.store.lost.learnedAboveBefore(this.partition, this.inPartition, status.head, status.hlc)
    ) {
      fork = status.head;
    }
    if (fork === undefined) {
      this.store.partitions.setHubLineage(this.partition, status.lin, status.hlc);
      return undefined;
    }
    const reconciled = this.store.lost.reconcile(
      this.partition,
      { lineage: status.lin, fork, statusHlc: status.hlc },
      this.agentId,
      this.inPartition,
    );
    this.log.warn(
      {
        partition: this.partition,
        previousLineage: reconciled.previousLineage,
        lineage: status.lin,
        fork,
        marked: fork === status.fork && status.lin !== known?.lineage,
        lostDocuments: reconciled.documents,
        lostWrites: reconciled.writes,
        incarnation: reconciled.incarnation,
      },
      'the hub was restored from a backup: versions above the fork were taken out of the replica and will be reported to the hub; ' +
        'pulling the partition again from LSN 0 and resending pending writes under a new incarnation',
    );
    this.#inFlight = undefined;
    return reconciled;
  }

  /** Lost documents not yet acknowledged by the hub. */
  get pending(): number {
    return this.store.lost.pendingOf(this.partition);
  }

  start(): void {
    this.#timer ??= setInterval(() => this.#checkTimeout(), Math.max(50, this.options.ackTimeoutMs / 4));
    this.#timer.unref?.();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  onConnected(): void {
    this.#inFlight = undefined;
    this.pump();
  }

  onDisconnected(): void {
    this.#inFlight = undefined;
  }

  /** Sends the next chunk of the report, if one waits and none is in flight. */
  pump(): void {
    if (this.#inFlight || !this.delegate.connected()) return;
    const chunk = this.store.lost.nextChunk(this.partition, limits.maxLostDocs, limits.maxMessageBytes / 2);
    if (!chunk) return;
    if (this.delegate.send(['lost', { id: chunk.id, lin: chunk.lineage, fork: chunk.fork, docs: chunk.docs }])) {
      this.#inFlight = { chunk, sentAt: Date.now() };
    }
  }

  /** The hub stored chunk `id`: forget it, and send the next. */
  onAck(id: number): void {
    const sent = this.#inFlight?.chunk;
    if (!sent || sent.id !== id) return; // late or repeated
    this.store.lost.acknowledge(this.partition, sent.lineage, id);
    this.#inFlight = undefined;
    const left = this.pending;
    if (left === 0) this.log.info({ partition: this.partition }, 'the hub has every lost version this device held after its restore');
    this.pump();
  }

  #checkTimeout(): void {
    if (this.#inFlight && Date.now() - this.#inFlight.sentAt > this.options.ackTimeoutMs) {
      this.log.warn({ partition: this.partition, id: this.#inFlight.chunk.id }, 'no acknowledgement of a lost report; sending it again');
      this.#inFlight = undefined;
      this.pump();
    }
  }
}
