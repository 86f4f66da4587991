/**
 * Crash points for the fault-injection suite. `OUTPOST_FAULT_POINTS=hub.before-commit:0.02`
 * makes the process kill itself with SIGKILL at that moment with that probability, so tests
 * can reach "received a batch but not committed it", "committed but not acknowledged" and
 * "retention removed part of what it set out to" (`hub.mid-prune`, after a chunk of the log is
 * deleted and before the next). Unset (always, outside tests) the check is a lookup in an empty map.
 */
export type FaultPoint = 'hub.before-commit' | 'hub.after-commit' | 'hub.mid-prune';

const points = new Map<string, number>(
  (process.env.OUTPOST_FAULT_POINTS ?? '')
    .split(',')
    .filter(Boolean)
    .map((entry) => {
      const [name, chance] = entry.split(':');
      return [name!.trim(), Number(chance ?? '1')] as const;
    }),
);

export function faultPoint(name: FaultPoint): void {
  const chance = points.get(name);
  if (chance !== undefined && Math.random() < chance) process.kill(process.pid, 'SIGKILL');
}
