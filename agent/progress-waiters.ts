import { AgentClosedError, ReadTimeoutError } from '../shared/errors.js';

interface Waiter {
  isDone: () => boolean;
  resolve: () => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** Callers waiting until the replica has caught up far enough (reads with `minLsn`). */
export class ProgressWaiters {
  readonly #waiters = new Set<Waiter>();

  /** Resolves once `isDone()` holds after some progress; rejects with `onTimeout()` after `timeoutMs`. */
  wait(isDone: () => boolean, timeoutMs: number, onTimeout: () => Error): Promise<void> {
    if (isDone()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        isDone,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(onTimeout());
        }, timeoutMs),
      };
      waiter.timer.unref?.();
      this.#waiters.add(waiter);
    });
  }

  /**
   * Resolves once a collection is applied up to `minLsn`, a causal token (an LSN of the log of
   * `lane`'s partition): its own cursor or the lane's watermark past it.
   */
  caughtUp(lane: { pull(): void; readonly watermark: number }, cursor: () => number, minLsn: number, timeoutMs: number): Promise<void> {
    const applied = (): number => Math.max(cursor(), lane.watermark);
    if (applied() >= minLsn) return Promise.resolve();
    lane.pull(); // the token may name another collection's LSN: a pull moves the watermark past it
    return this.wait(
      () => applied() >= minLsn,
      timeoutMs,
      () => new ReadTimeoutError(minLsn, applied(), timeoutMs),
    );
  }

  /** Called after every change the replica applies. */
  notify(): void {
    for (const w of this.#waiters) {
      if (!w.isDone()) continue;
      clearTimeout(w.timer);
      this.#waiters.delete(w);
      w.resolve();
    }
  }

  close(): void {
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(new AgentClosedError());
    }
    this.#waiters.clear();
  }
}
