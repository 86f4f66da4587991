import type { Logger } from 'pino';
import { partitionScoped } from './store/agent-db.js';
import type { Settings } from './store/settings.js';

/**
 * The highest leadership epoch heard from one partition's hub (kept across restarts): a message
 * with a lower one comes from a hub process that has since been replaced, and is ignored.
 */
export class EpochGuard {
  /** Loaded on first use. */
  #highest: number | undefined;

  constructor(
    private readonly partition: string,
    private readonly settings: Settings,
    /** A new leader took over (not the first epoch heard): acks for batches the old one took are lost. */
    private readonly onNewLeader: () => void,
    private readonly log: Logger,
  ) {}

  /** Whether a message of this type and epoch comes from a deposed hub process. */
  isDeposed(type: string, epoch: number | undefined): boolean {
    if (epoch === undefined) return false;
    const setting = partitionScoped('hubEpoch', this.partition);
    const highest = (this.#highest ??= this.settings.get<number>(setting) ?? 0);
    if (epoch < highest) {
      this.log.warn(
        { partition: this.partition, type, epoch, highest },
        'ignored a message from a deposed hub process (lower leadership epoch)',
      );
      return true;
    }
    if (epoch > highest) {
      this.settings.set(setting, epoch);
      this.#highest = epoch;
      if (highest > 0) this.onNewLeader();
    }
    return false;
  }
}
