import type { VerifyReport } from './verify-messages.js';

/**
 * What verifying a device's copy found, as people read it (the agent's status, the hub's fleet
 * view): when its copy last matched the hub's digests and at which LSN; divergences found and
 * repairs made, with the documents they rewrote or removed and the bytes they moved; the last
 * repair's cause (`scrub`: a row's bytes rotted; `digest`: a quiet check found a difference;
 * `hole`: a change set or page left the copy different, so something was missed on the way) and time.
 */
export interface VerificationView {
  lastVerifiedAt?: string;
  lastVerifiedLsn?: number;
  divergencesFound: number;
  repairs: number;
  documentsRepaired: number;
  bytesRepaired: number;
  lastRepairCause?: 'scrub' | 'digest' | 'hole';
  lastRepairAt?: string;
}

/** A device's report (`vf`, short on the wire) as a view, with ISO times. */
export function verificationView(r: VerifyReport): VerificationView {
  const iso = (ms: number): string => new Date(ms).toISOString();
  return {
    ...(r.at !== undefined && { lastVerifiedAt: iso(r.at) }),
    ...(r.lsn !== undefined && { lastVerifiedLsn: r.lsn }),
    divergencesFound: r.found,
    repairs: r.repaired,
    documentsRepaired: r.docs,
    bytesRepaired: r.bytes,
    ...(r.cause !== undefined && { lastRepairCause: r.cause }),
    ...(r.rat !== undefined && { lastRepairAt: iso(r.rat) }),
  };
}
