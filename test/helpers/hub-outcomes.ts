import type Database from 'better-sqlite3';

export interface RecordedOutcome {
  outcome: string;
  lsn: number | null;
  /** Why, for an op that was not committed. */
  reason?: string | null;
}

/**
 * Reads the outcome the hub recorded for an op straight from its database, as an independent
 * checker should: committed ops are kept as runs of seqs (`committed_runs`), every other outcome
 * as a row of its own (`outcomes`). `tables` names other tables of the same shape (the chaos
 * checker's archive).
 */
export function outcomeReader(
  db: Database.Database,
  tables: { runs: string; outcomes: string } = { runs: 'committed_runs', outcomes: 'outcomes' },
): (agentId: string, incarnation: string, seq: number) => RecordedOutcome | undefined {
  const single = db.prepare<[string, string, number], RecordedOutcome>(
    `SELECT outcome, lsn, reason FROM ${tables.outcomes} WHERE agent_id = ? AND incarnation = ? AND seq = ?`,
  );
  const run = db.prepare<{ agent: string; inc: string; seq: number }, { lsn: number }>(
    `SELECT first_lsn + (@seq - first_seq) AS lsn FROM ${tables.runs}
     WHERE agent_id = @agent AND incarnation = @inc AND first_seq <= @seq AND last_seq >= @seq`,
  );
  return (agent, inc, seq) => {
    const committed = run.get({ agent, inc, seq });
    return committed ? { outcome: 'committed', lsn: committed.lsn } : single.get(agent, inc, seq);
  };
}
