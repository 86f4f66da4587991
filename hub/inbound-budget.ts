import { TokenBucket, TokenBuckets } from './token-bucket.js';

/**
 * Bytes one client may send per second, with twice that saved up, as a token bucket. Past it,
 * the connection stops reading its socket until the bucket is back to zero: TCP flow control
 * slows the client down and nothing it sent is lost (the way EMQX and others limit a client's
 * incoming rate). Every message a client can send costs the hub work in proportion to its
 * bytes at most, so this bounds what one connection can make the hub do, whatever it sends.
 * `spend(bytes)` returns how long to stop reading (0: go on).
 */
export class InboundBudget extends TokenBucket {
  constructor(bytesPerSecond: number, now?: () => number) {
    super(bytesPerSecond, 2 * bytesPerSecond, now);
  }
}

/**
 * Each logged-in agent's budget, kept across its connections: a client that reconnects would
 * otherwise start each connection with a fresh budget saved up, and could send at the rate it
 * reconnects times that.
 */
export class InboundBudgets extends TokenBuckets {
  constructor(bytesPerSecond: number) {
    super(bytesPerSecond, 2 * bytesPerSecond);
  }
}
