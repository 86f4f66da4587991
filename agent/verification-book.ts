import type { VerifyReport } from '../shared/messages.js';
import type { Settings } from './store/settings.js';

export type RepairCause = NonNullable<VerifyReport['cause']>;

const SETTING = 'verification';

/**
 * What verifying this device's copy has found and repaired, across restarts: the counts live in
 * the database (written only when a divergence is found or repaired, never per check: flash
 * wear), when the copy last matched the hub's digests only in memory. Its figures go to the
 * hub in status reports (`vf`) and to the app in the agent's status.
 */
export class VerificationBook {
  #report: VerifyReport;

  constructor(private readonly settings: Settings) {
    const stored = settings.get<VerifyReport>(SETTING);
    this.#report = { found: 0, repaired: 0, docs: 0, bytes: 0, ...stored };
    // A match heard in an earlier run says nothing of the copy as it is now.
    delete this.#report.at;
    delete this.#report.lsn;
  }

  get report(): VerifyReport {
    return { ...this.#report };
  }

  /** The copy of a collection matched the hub's digest at `lsn` (of its partition's log). */
  verified(lsn: number, now = Date.now()): void {
    this.#report.at = now;
    this.#report.lsn = lsn;
  }

  /** A divergence was found (`count` rows, for a scrub). */
  found(count = 1): void {
    this.#report.found += count;
    this.#persist();
  }

  /** A repair ended: what it rewrote or removed, and the bytes it moved. */
  repaired(cause: RepairCause, documents: number, bytes: number, now = Date.now()): void {
    const r = this.#report;
    r.repaired += 1;
    r.docs += documents;
    r.bytes += bytes;
    r.cause = cause;
    r.rat = now;
    this.#persist();
  }

  #persist(): void {
    const { at: _at, lsn: _lsn, ...kept } = this.#report;
    this.settings.set(SETTING, kept);
  }
}
