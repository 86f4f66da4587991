import type { HubCore } from './core.js';
import type { AgentView } from './fleet.js';

export interface Sample {
  at: number;
  /** Ops committed per second since the previous sample. */
  commitsPerSecond: number;
  /** The largest lag, in changes, of any agent in any collection. */
  maxLag: number;
  online: number;
}

/** A ring of fleet samples for the dashboard's charts: one every `everyMs`, the last `keep`. */
export class FleetHistory {
  readonly #samples: Sample[] = [];
  #committed = 0;
  #last = Date.now();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    core: HubCore,
    private readonly fleet: () => Promise<AgentView[]>,
    private readonly everyMs = 5_000,
    private readonly keep = 720,
  ) {
    core.on('commit', (_requests, outcomes) => {
      this.#committed += outcomes.filter((o) => o === 'committed').length;
    });
  }

  start(): void {
    this.#timer = setInterval(() => void this.sample().catch(() => undefined), this.everyMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async sample(): Promise<void> {
    const agents = await this.fleet();
    const now = Date.now();
    const maxLag = Math.max(0, ...agents.flatMap((a) => Object.values(a.collections).map((c) => c.lagChanges)));
    this.#samples.push({
      at: now,
      commitsPerSecond: this.#committed / Math.max(0.001, (now - this.#last) / 1000),
      maxLag,
      online: agents.filter((a) => a.online).length,
    });
    if (this.#samples.length > this.keep) this.#samples.shift();
    this.#committed = 0;
    this.#last = now;
  }

  get samples(): readonly Sample[] {
    return this.#samples;
  }
}
