/**
 * Crash points for the fault-injection suites. `OUTPOST_FAULT_POINTS=hub.before-commit:0.02`
 * makes the process kill itself with SIGKILL at that moment with that probability, so tests
 * can reach "received a batch but not committed it", "committed but not acknowledged" and
 * "retention removed part of what it set out to" (`hub.mid-prune`, after a chunk of the log is
 * deleted and before the next). The agent's points are the stages of a write's life on the
 * device, each right after its commit (the power-cut test stops it there): the write stored in
 * the outbox, the hub's outcomes recorded, a change set applied. Unset (always, outside tests)
 * the check is a lookup in an empty map.
 */
export type FaultPoint =
  'hub.before-commit' | 'hub.after-commit' | 'hub.mid-prune' | 'agent.after-append' | 'agent.after-ack' | 'agent.after-apply';

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
