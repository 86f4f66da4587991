import { AgentClosedError } from '../shared/errors.js';

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
