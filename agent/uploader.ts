import type { Logger } from 'pino';
import { unpackAck } from '../shared/acks.js';
import type { AckMessage, BatchMessage, OpResult, ResyncMessage } from '../shared/messages.js';
import type { AgentStore } from './store/agent-store.js';
import type { Rejection } from './store/rejections.js';
import { faultPoint } from '../shared/fault-points.js';

/** That many resyncs in a row for seqs already acknowledged, with no new commit between, are reported. */
const UNFILLABLE_RESYNCS = 3;

export interface UploaderOptions {
  /** The hub partition whose sequence of writes this uploader sends. */
  partition: string;
  maxBatchOps: number;
  maxBatchBytes: number;
  /** Batches sent and not yet acknowledged, at most. */
  maxInFlight: number;
  /** Resend from the first unacknowledged op when no ack came for this long. */
  ackTimeoutMs: number;
}

export interface UploaderDelegate {
  /** Sends a batch; false when there is no connection. */
  send(batch: BatchMessage): boolean;
  /** How far uploading may go now: all (`true`), none (`false`: sync windows), or up to a seq (the transfer budget: alarms). */
  mayUpload(): boolean | number;
  isReplicated(collection: string): boolean;
  onAcked(results: readonly OpResult[]): void;
  onRejected(rejections: Rejection[]): void;
}

/**
 * Uploads the outbox as contiguous runs of seqs. Rows leave the outbox only on the hub's
 * commit ack (an MQTT PUBACK proves nothing). Anything unclear — a reconnect, a resync, a
 * missing ack — rewinds to the first unacknowledged seq: the hub re-acks duplicates, so
 * resending is always safe.
 */
export class Uploader {
  #next: number | undefined;
  #inFlight: Array<{ last: number; sentAt: number }> = [];
  #active = false;
  #timer: NodeJS.Timeout | undefined;
  #pausedUntil = 0;
  /** Resyncs in a row asking for seqs this agent no longer holds. */
  #unfillable = 0;

  constructor(
    private readonly store: AgentStore,
    private readonly delegate: UploaderDelegate,
    private readonly options: UploaderOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.#active = true;
    this.#rewind();
    this.#timer = setInterval(() => this.#checkTimeout(), Math.max(50, this.options.ackTimeoutMs / 4));
    this.#timer.unref?.();
    this.pump();
  }

  stop(): void {
    this.#active = false;
    clearInterval(this.#timer);
    this.#inFlight = [];
  }

  /** A batch was sent and its ack has not come: blob chunks wait behind it (agent/blobs/blob-sender.ts). */
  get busy(): boolean {
    return this.#inFlight.length > 0;
  }

  /** Sends what the window allows. Called on new writes, acks and (re)connects. */
  pump(): void {
    const may = this.delegate.mayUpload();
    if (!this.#active || Date.now() < this.#pausedUntil || may === false) return;
    const limit = may === true ? Infinity : may;
    while (this.#inFlight.length < this.options.maxInFlight) {
      const from = this.#next ?? this.store.outbox.lowestPendingSeq(this.options.partition);
      if (from === undefined || from > limit) return;
      let ops = this.store.outbox.pendingFrom(this.options.partition, from, this.options.maxBatchOps, this.options.maxBatchBytes);
      if (limit !== Infinity) ops = ops.filter((op) => op.seq <= limit);
      if (ops.length === 0) return;
      if (!this.delegate.send(['batch', { inc: this.store.partitions.incarnationOf(this.options.partition), ops }])) return;
      const last = ops.at(-1)!.seq;
      this.#inFlight.push({ last, sentAt: Date.now() });
      this.#next = last + 1;
    }
  }

  onAck([, ack]: AckMessage): void {
    if (ack.inc !== this.store.partitions.incarnationOf(this.options.partition)) return;
    const results = unpackAck(ack);
    if (results.length === 0) return;
    const rejections = this.store.outbox.applyResults(this.options.partition, results, (c) => this.delegate.isReplicated(c), ack.hlc);
    faultPoint('agent.after-ack');
    const first = results[0]!.seq;
    const acked = results[results.length - 1]!.seq;
    if (results.some((r) => !r.dup)) this.#unfillable = 0;
    // One hub process acks an agent's batches in order, so a batch sent earlier whose ack has not
    // come is one whose ack was lost: the hub that took it died (a failover) before answering.
    // Resend from the first unacknowledged write now; the new hub re-acks what was committed.
    const lost = this.#inFlight.some((b) => b.last < first);
    this.#inFlight = this.#inFlight.filter((b) => b.last > acked);
    this.delegate.onAcked(results);
    if (rejections.length > 0) this.delegate.onRejected(rejections);
    if (lost) {
      this.log.info(
        { acked: [first, acked] },
        'an earlier batch was never acknowledged (hub failover?); resending from the first unacknowledged write',
      );
      this.#rewind();
    }
    this.pump();
  }

  onResync([, resync]: ResyncMessage): void {
    if (resync.inc !== this.store.partitions.incarnationOf(this.options.partition)) return;
    const lowest = this.store.outbox.lowestPendingSeq(this.options.partition);
    if (lowest !== undefined && resync.expected < lowest) {
      // The hub asks for seqs this device already saw acknowledged. Usually the resync is just
      // stale (it crossed the ack); resending after a pause shows which. If the hub keeps
      // asking, it lost data (restored from an old backup?): resending cannot fill that gap,
      // so keep trying at that slow pace and say so.
      this.#unfillable += 1;
      this.#pausedUntil = Date.now() + this.options.ackTimeoutMs;
      if (this.#unfillable >= UNFILLABLE_RESYNCS) {
        this.log.error(
          { expected: resync.expected, lowestPending: lowest },
          'hub keeps asking for seqs this agent no longer holds; it may have lost data',
        );
        this.#unfillable = 0;
      }
    }
    this.#rewind();
    this.pump();
  }

  #rewind(): void {
    this.#next = undefined;
    this.#inFlight = [];
  }

  /** After a reconnect nothing in flight can still be acknowledged. */
  reset(): void {
    this.#rewind();
  }

  #checkTimeout(): void {
    const oldest = this.#inFlight[0];
    if (!oldest && this.#pausedUntil !== 0 && Date.now() >= this.#pausedUntil) {
      this.#pausedUntil = 0;
      this.pump();
      return;
    }
    if (oldest && Date.now() - oldest.sentAt > this.options.ackTimeoutMs) {
      this.log.warn({ waitedMs: Date.now() - oldest.sentAt }, 'no ack from hub; resending from the first unacknowledged write');
      this.#rewind();
      this.pump();
    }
  }
}
