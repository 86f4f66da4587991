import type { Socket } from 'node:net';

/** A client over its queue bound that sends nothing on for this long is dropped. */
export const STALLED_AFTER_MS = 5_000;
/** However it progresses, a client with this many times the bound unsent is dropped at once. */
export const HARD_CAP_FACTOR = 4;
/** How often a queue over its bound is looked at for progress. */
const CHECK_EVERY_MS = 500;

/** Why a send queue gave up on its client. */
export type Overflow =
  { why: 'hard_cap'; queuedBytes: number; limitBytes: number } | { why: 'stalled'; queuedBytes: number; stalledMs: number };

/**
 * What one client has not yet been sent, judged against `maxBytes`:
 * - over half of it the client is `backlogged`: the broker stops sending it broadcast change
 *   sets, which it pulls instead once it catches up (their only cost to it is latency);
 * - over the bound with nothing sent on for `stalledAfterMs`, or over `HARD_CAP_FACTOR` times
 *   the bound at any time, it is given up on (`onOverflow`): a client that stopped reading.
 * A burst of change sets (a fleet flushing after an outage) thus slows an honest device on a slow
 * link down instead of disconnecting it, over and over.
 */
export class SendQueue {
  #timer: NodeJS.Timeout | undefined;
  /** Bytes handed to the kernel when progress was last seen, and when. */
  #sent = 0;
  #since = 0;

  constructor(
    private readonly socket: Socket,
    readonly maxBytes: number,
    private readonly onOverflow: (overflow: Overflow) => void,
    private readonly stalledAfterMs = STALLED_AFTER_MS,
  ) {}

  /** Unsent bytes. */
  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  /** Over half the bound: broadcast change sets are better skipped than queued. */
  get backlogged(): boolean {
    return this.queuedBytes > this.maxBytes / 2;
  }

  /** Calls `fn` once when everything queued has been sent. */
  onceCaughtUp(fn: () => void): void {
    if (this.socket.writableLength === 0) fn();
    else this.socket.once('drain', fn);
  }

  /** After each write: gives up at the hard cap, and starts watching for progress over the bound. */
  wrote(): void {
    const queued = this.queuedBytes;
    const cap = this.maxBytes * HARD_CAP_FACTOR;
    if (queued > cap) return this.#overflow({ why: 'hard_cap', queuedBytes: queued, limitBytes: cap });
    if (queued <= this.maxBytes || this.#timer) return;
    this.#sent = this.#sentBytes();
    this.#since = Date.now();
    this.#timer = setInterval(() => this.#check(), CHECK_EVERY_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #check(): void {
    if (this.socket.destroyed || this.queuedBytes <= this.maxBytes) return this.stop();
    const sent = this.#sentBytes();
    const now = Date.now();
    if (sent > this.#sent) {
      this.#sent = sent;
      this.#since = now;
    } else if (now - this.#since >= this.stalledAfterMs) {
      this.#overflow({ why: 'stalled', queuedBytes: this.queuedBytes, stalledMs: now - this.#since });
    }
  }

  #overflow(overflow: Overflow): void {
    this.stop();
    this.onOverflow(overflow);
  }

  /** Bytes handed to the kernel (`bytesWritten` counts those still queued too). */
  #sentBytes(): number {
    return this.socket.bytesWritten - this.socket.writableLength;
  }
}
