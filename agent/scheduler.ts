import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import { ConfigError } from '../shared/errors.js';

/**
 * When the agent talks to the hub.
 * - `realtime`: connected all the time; writes go out within milliseconds.
 * - `windows`: uploads happen inside windows opened by a cron expression (node-cron, with
 *   seconds if six fields) and lasting `windowSeconds`; with `disconnectOutside` the agent
 *   connects for the window, uploads, catches up, and disconnects again (metered links).
 * In both, a write to a high-priority collection, or "sync now", syncs at once.
 */
export type SyncSchedule = { mode: 'realtime' } | { mode: 'windows'; cron: string; windowSeconds: number; disconnectOutside: boolean };

export interface SchedulerDelegate {
  /** A sync window opened or closed. */
  onWindow?(open: boolean): void;
  connect(): void;
  disconnect(): Promise<void>;
  connected(): boolean;
  /** Upload what the outbox holds (the uploader asks `mayUpload` itself). */
  pump(): void;
  /** Catch up from the hub. */
  pull(): void;
  /** Nothing left to upload and no catch-up under way. */
  idle(): boolean;
}

/** How often a closing window or a sync-now checks whether the work is done. */
const IDLE_POLL_MS = 100;

/**
 *   realtime:  always open
 *   windows:   closed ─cron─► open (connect, upload, pull) ─windowSeconds, then idle─► closed (disconnect?)
 *              closed ─high-priority write / sync now─► open until idle ─► closed
 */
export class SyncScheduler {
  #windowOpen = false;
  #syncs = 0;
  #task: ScheduledTask | undefined;
  #windowTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  lastSyncAt: number | undefined;

  constructor(
    readonly schedule: SyncSchedule,
    private readonly delegate: SchedulerDelegate,
    private readonly log: Logger,
  ) {
    if (schedule.mode === 'windows' && !cron.validate(schedule.cron)) {
      throw new ConfigError(`sync window cron expression ${JSON.stringify(schedule.cron)} is invalid; use five or six cron fields`);
    }
  }

  start(): void {
    const { schedule } = this;
    if (schedule.mode === 'realtime') {
      this.delegate.connect();
      return;
    }
    this.#task = cron.schedule(schedule.cron, () => this.#openWindow(), { name: 'outpost-sync-window', noOverlap: true });
    if (!schedule.disconnectOutside) this.delegate.connect(); // stay in touch (downloads), upload only in windows
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#windowTimer);
    await this.#task?.destroy();
  }

  /** Uploads are allowed now. */
  mayUpload(): boolean {
    return this.schedule.mode === 'realtime' || this.#windowOpen || this.#syncs > 0;
  }

  get nextWindow(): Date | undefined {
    return this.#task?.getNextRun() ?? undefined;
  }

  /** Connects if needed, uploads everything, catches up; resolves when done or after `timeoutMs`. */
  async syncNow(timeoutMs = 30_000): Promise<boolean> {
    this.#syncs += 1;
    try {
      this.delegate.connect();
      this.delegate.pump();
      this.delegate.pull();
      const done = await this.#untilIdle(timeoutMs);
      if (done) this.lastSyncAt = Date.now();
      return done;
    } finally {
      this.#syncs -= 1;
      await this.#maybeDisconnect();
    }
  }

  #openWindow(): void {
    if (this.#stopped || this.schedule.mode !== 'windows') return;
    this.log.info({ seconds: this.schedule.windowSeconds }, 'sync window open');
    this.#windowOpen = true;
    this.delegate.onWindow?.(true);
    this.delegate.connect();
    this.delegate.pump();
    this.delegate.pull();
    clearTimeout(this.#windowTimer);
    this.#windowTimer = setTimeout(() => void this.#closeWindow(), this.schedule.windowSeconds * 1000);
    this.#windowTimer.unref?.();
  }

  async #closeWindow(): Promise<void> {
    this.#windowOpen = false;
    this.log.info('sync window closed');
    this.delegate.onWindow?.(false);
    if (this.delegate.idle()) this.lastSyncAt = Date.now();
    await this.#maybeDisconnect();
  }

  /** Outside windows, with disconnectOutside: hang up once nothing is left to do. */
  async #maybeDisconnect(): Promise<void> {
    if (this.schedule.mode !== 'windows' || !this.schedule.disconnectOutside) return;
    if (this.#windowOpen || this.#syncs > 0 || this.#stopped) return;
    if (this.delegate.connected()) await this.delegate.disconnect();
  }

  async #untilIdle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    // Give the link a moment to connect and the first pull to go out before judging idleness.
    await new Promise((resolve) => setTimeout(resolve, IDLE_POLL_MS));
    while (Date.now() < deadline && !this.#stopped) {
      if (this.delegate.connected() && this.delegate.idle()) return true;
      await new Promise((resolve) => setTimeout(resolve, IDLE_POLL_MS));
    }
    return false;
  }
}
