import type { OpResult } from '../../shared/messages.js';
import type { RecordedOutcome } from './hub-store.js';

/**
 * How both stores remember what became of an agent's ops: every outcome but committed as a row
 * of its own (`outcomes`), committed ops as runs of seqs (`committed_runs`) whose digests stay in
 * the log, and how either becomes a RecordedOutcome again.
 */

/** Ops `firstSeq..lastSeq` of one incarnation, committed at consecutive LSNs from `firstLsn`. */
export interface CommittedRun {
  firstSeq: number;
  lastSeq: number;
  firstLsn: number;
}

/** An op's recorded outcome row, or the committed run that covers it, with the logged digest (PostgreSQL reads them in one query). */
export interface OutcomeRow {
  agent_id: string;
  incarnation: string;
  seq: number;
  outcome: string | null;
  lsn: number | null;
  reason: string | null;
  detail: string | null;
  digest: string | null;
  run_first_seq: number | null;
  run_last_seq: number | null;
  run_first_lsn: number | null;
  log_digest: string | null;
}

/** An outcome kept one row per op (every outcome but committed, which is kept as runs). */
export function explicitOutcome(row: {
  outcome: string;
  lsn: number | null;
  reason: string | null;
  detail: string | null;
  digest: string | null;
}): RecordedOutcome {
  return {
    result: {
      outcome: row.outcome as OpResult['outcome'],
      ...(row.lsn !== null && { lsn: row.lsn }),
      ...(row.reason !== null && { reason: row.reason }),
      ...(row.detail !== null && { detail: row.detail }),
    },
    ...(row.digest !== null && { digest: row.digest }),
  };
}

/**
 * The outcome of op `seq` if `run` covers it: committed, at the run's first LSN plus the op's
 * offset in the run. `digestAt` reads the digest the log keeps at that LSN; it is gone once
 * retention pruned the entry (digests are never empty, so an empty one counts as gone).
 */
export function committedOutcome(
  run: CommittedRun,
  seq: number,
  digestAt: (lsn: number) => string | null | undefined,
): RecordedOutcome | undefined {
  if (seq < run.firstSeq || seq > run.lastSeq) return undefined;
  const lsn = run.firstLsn + (seq - run.firstSeq);
  const digest = digestAt(lsn);
  return { result: { outcome: 'committed', lsn }, ...(digest && { digest }) };
}

/** The outcome an op row describes: an explicit outcome, else its committed run. */
export function toRecordedOutcome(row: OutcomeRow): RecordedOutcome | undefined {
  if (row.outcome !== null) return explicitOutcome({ ...row, outcome: row.outcome });
  if (row.run_first_seq === null || row.run_last_seq === null || row.run_first_lsn === null) return undefined;
  const run = { firstSeq: row.run_first_seq, lastSeq: row.run_last_seq, firstLsn: row.run_first_lsn };
  return committedOutcome(run, row.seq, () => row.log_digest);
}
