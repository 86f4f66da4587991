import type { Logger } from 'pino';

/** Each kind of work refused to one client to bound what it costs (docs/SECURITY.md), and what its log line says. */
const WHAT = {
  pull_superseded: 'pulls replaced by a newer one before they were answered (one pull per agent at a time, within maxPullBytesPerSecond)',
  status_superseded: 'status reports replaced by a newer one before they were taken (at most 20 a second per agent)',
  hello_superseded: 'hellos replaced by a newer one, or whose connection ended, before they were answered (about one a second per agent)',
  replica_wait: 'replica waits refused over their limits (the writer times out)',
  status_collection: 'collections a status report named that do not exist here or that the agent may not read (not kept)',
  repair_superseded: 'range repair requests replaced by a newer one before they were answered (one at a time per agent)',
  blob_dropped: "blob messages dropped with 8 of the agent's already waiting to be handled (it sends them again when no answer comes)",
  change_set_skipped: 'change sets not sent to an agent with too much unsent (over half maxQueuedBytes); it pulls them',
} as const;

export type RefusedWork = keyof typeof WHAT;
export const REFUSED_WORK = Object.keys(WHAT) as RefusedWork[];

/** At most one log line per agent and kind in this long: a flood must not flood the log too. */
const LOG_EVERY_MS = 60_000;

/** Logs refused work, naming the client and what it was refused, at most once a minute per client and kind. */
export class RefusedWorkLog {
  readonly #logged = new Map<string, { at: number; since: number }>();

  constructor(private readonly log: Logger) {}

  record(kind: RefusedWork, agentId: string, count: number, now = Date.now()): void {
    const id = `${kind}\n${agentId}`;
    const last = this.#logged.get(id);
    if (last && now - last.at < LOG_EVERY_MS) {
      last.since += count;
      return;
    }
    if (this.#logged.size > 10_000) this.#logged.clear(); // bounded, whatever the number of clients
    this.log.warn({ agentId, refused: kind, count: count + (last?.since ?? 0) }, WHAT[kind]);
    this.#logged.set(id, { at: now, since: 0 });
  }
}
