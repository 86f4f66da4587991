import type { Settings } from './store/settings.js';

/** Where the spend of the current periods is kept (so that a restart does not give the budget back). */
const SPENT_SETTING = 'transfer_spent';
/** The budget the hub declared for this device, kept for when it is offline. */
const DECLARED_SETTING = 'transfer_declared';
/** The spend is written down this often (not on every message: the flash card), and when the agent closes. */
const SAVE_EVERY_MS = 60_000;
/** Blobs stop spending at this share of the budget: the rest is kept for documents. */
const BLOB_SHARE = 0.8;

/** A device's transfer budget on a metered link: bytes per UTC day, per UTC month, or both. */
export interface TransferBudgetOptions {
  bytesPerDay?: number;
  bytesPerMonth?: number;
}

/** Who spends: alarms (high-priority collections) always, documents up to the budget, blobs up to BLOB_SHARE of it. */
export type SpendingLane = 'alarms' | 'documents' | 'blobs';

export interface BudgetPeriod {
  period: 'day' | 'month';
  budgetBytes: number;
  spentBytes: number;
  /** When the period ends and the spend starts again from 0 (ISO 8601, UTC). */
  resetsAt: string;
}

interface Spent {
  day: string;
  dayBytes: number;
  month: string;
  monthBytes: number;
}

/**
 * Meters what the device sends and receives over MQTT (topic and payload bytes; TCP and TLS
 * framing are not counted) against its budget, and says which lanes may spend now: alarms
 * always, documents until the budget is spent, blobs until BLOB_SHARE of it is. Periods are UTC
 * days and months; a new one starts from 0 (`onRenewed`).
 */
export class TransferBudget {
  #spent: Spent;
  #savedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  /** What the hub declared for this device (HubConfig.budgets), followed unless the device has options of its own. */
  #declared: TransferBudgetOptions;

  constructor(
    private readonly settings: Settings,
    private readonly own: TransferBudgetOptions,
    private readonly onRenewed: () => void,
    private readonly now: () => number = Date.now,
  ) {
    this.#spent = settings.get<Spent>(SPENT_SETTING) ?? { day: '', dayBytes: 0, month: '', monthBytes: 0 };
    this.#declared = settings.get<TransferBudgetOptions>(DECLARED_SETTING) ?? {};
    this.#roll();
  }

  /** The budget in force: the device's own, if it has one; else the hub's declaration. */
  get options(): TransferBudgetOptions {
    return this.own.bytesPerDay !== undefined || this.own.bytesPerMonth !== undefined ? this.own : this.#declared;
  }

  /** The hub declared this device's budget (`budget`, on each hello): kept, and followed unless the device has its own. */
  declare({ d, m }: { d?: number; m?: number }): void {
    const declared = { ...(d !== undefined && { bytesPerDay: d }), ...(m !== undefined && { bytesPerMonth: m }) };
    if (declared.bytesPerDay === this.#declared.bytesPerDay && declared.bytesPerMonth === this.#declared.bytesPerMonth) return;
    this.#declared = declared;
    this.settings.set(DECLARED_SETTING, declared);
    this.onRenewed(); // a larger budget, or none: what waited may go now
  }

  /** Looks every few seconds whether a new period began, so that what waits for it goes then. */
  start(): void {
    this.#timer = setInterval(() => this.#roll(), 5_000);
    this.#timer.unref?.();
  }

  stop(): void {
    clearInterval(this.#timer);
    if (this.limited) this.save();
  }

  /** A budget is set. */
  get limited(): boolean {
    return this.options.bytesPerDay !== undefined || this.options.bytesPerMonth !== undefined;
  }

  /** Counts bytes moved; without a budget nothing is counted (every message passes here, and the spend would be written down once a minute). */
  spend(bytes: number): void {
    if (!this.limited) return;
    this.#roll();
    this.#spent.dayBytes += bytes;
    this.#spent.monthBytes += bytes;
    if (this.now() - this.#savedAt > SAVE_EVERY_MS) this.save();
  }

  /** Whether a lane may spend now. */
  allows(lane: SpendingLane): boolean {
    if (lane === 'alarms' || !this.limited) return true;
    const share = lane === 'blobs' ? BLOB_SHARE : 1;
    return this.periods().every((p) => p.spentBytes < p.budgetBytes * share);
  }

  /** The spend of each budgeted period. */
  periods(): BudgetPeriod[] {
    this.#roll();
    const { bytesPerDay, bytesPerMonth } = this.options;
    const at = new Date(this.now());
    const periods: BudgetPeriod[] = [];
    if (bytesPerDay !== undefined) {
      const next = Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate() + 1);
      periods.push({ period: 'day', budgetBytes: bytesPerDay, spentBytes: this.#spent.dayBytes, resetsAt: new Date(next).toISOString() });
    }
    if (bytesPerMonth !== undefined) {
      const next = Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1);
      periods.push({
        period: 'month',
        budgetBytes: bytesPerMonth,
        spentBytes: this.#spent.monthBytes,
        resetsAt: new Date(next).toISOString(),
      });
    }
    return periods;
  }

  /** Writes the spend down (not fsynced: a power cut loses at most a minute of it). */
  save(): void {
    this.#savedAt = this.now();
    this.settings.set(SPENT_SETTING, this.#spent);
  }

  /** Starts a new day or month when the clock passed into one (and says so, once the caller is done). */
  #roll(): void {
    const iso = new Date(this.now()).toISOString();
    const [day, month] = [iso.slice(0, 10), iso.slice(0, 7)];
    let renewed = false;
    if (this.#spent.day !== day) {
      renewed = this.#spent.day !== '';
      this.#spent = { ...this.#spent, day, dayBytes: 0 };
    }
    if (this.#spent.month !== month) {
      renewed ||= this.#spent.month !== '';
      this.#spent = { ...this.#spent, month, monthBytes: 0 };
    }
    if (renewed) queueMicrotask(() => this.onRenewed());
  }
}
