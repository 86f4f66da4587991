/**
 * Waiting on the benchmarks' forked workers: the next message of a kind, or a failure naming
 * what was awaited when the worker exits first or stays silent. A worker that dies must fail
 * the benchmark, not hang it.
 */
import type { ChildProcess } from 'node:child_process';

export function nextMessage<M extends { kind: string }, K extends M['kind']>(
  child: ChildProcess,
  kind: K,
  timeoutMs: number,
  worker = 'a worker',
): Promise<Extract<M, { kind: K }>> {
  return new Promise((resolve, reject) => {
    const settle = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    const timer = setTimeout(() => {
      settle();
      reject(new Error(`${worker} sent no "${kind}" within ${timeoutMs} ms`));
    }, timeoutMs);
    const onExit = (code: number | null): void => {
      settle();
      reject(new Error(`${worker} exited (${code}) before "${kind}"`));
    };
    const onMessage = (message: M): void => {
      if (message.kind !== kind) return;
      settle();
      resolve(message as Extract<M, { kind: K }>);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}
