/**
 * Child processes killed when the benchmark process exits, however it exits: a failed or
 * interrupted run must not leave hubs or agent fleets running.
 */
import type { ChildProcess } from 'node:child_process';

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

export function killOnExit<T extends ChildProcess>(child: T): T {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}
