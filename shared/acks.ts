import type { AckMessage, OpResult } from './messages.js';

/** `[firstSeq, count, firstLsn]`: `count` ops committed with consecutive seqs at consecutive LSNs. */
export type CommittedRun = [first: number, count: number, firstLsn: number];

type AckBody = AckMessage[1];

/**
 * Packs an ack for the wire. Nearly every op of a healthy batch commits, and an agent's
 * consecutive ops get consecutive LSNs within one group commit, so a batch of 500 usually acks
 * as one run of three numbers instead of 500 objects. Re-acks of duplicates pack the same way.
 * Anything else (rejections, conflicts, runs broken by another agent's commit) stays per op.
 */
export function packAck(inc: string, hlc: string, results: readonly OpResult[]): AckBody {
  const single: OpResult[] = [];
  const runs: CommittedRun[] = [];
  const dupRuns: CommittedRun[] = [];
  for (const r of results) {
    if (r.outcome !== 'committed' || r.lsn === undefined) {
      single.push(r);
      continue;
    }
    const into = r.dup ? dupRuns : runs;
    const last = into[into.length - 1];
    if (last && r.seq === last[0] + last[1] && r.lsn === last[2] + last[1]) last[1] += 1;
    else into.push([r.seq, 1, r.lsn]);
  }
  return { inc, hlc, results: single, ...(runs.length > 0 && { runs }), ...(dupRuns.length > 0 && { dupRuns }) };
}

/** Every op's result an ack carries, in seq order. */
export function unpackAck(ack: AckBody): OpResult[] {
  const all: OpResult[] = [...ack.results];
  const expand = (runs: readonly CommittedRun[] | undefined, dup: boolean): void => {
    for (const [first, count, firstLsn] of runs ?? []) {
      for (let i = 0; i < count; i++) all.push({ seq: first + i, outcome: 'committed', lsn: firstLsn + i, ...(dup && { dup: true }) });
    }
  };
  expand(ack.runs, false);
  expand(ack.dupRuns, true);
  return all.sort((a, b) => a.seq - b.seq);
}

/** How many ops an ack newly settled (re-acked duplicates excluded), by outcome. */
export function newOutcomes(ack: AckBody): OpResult['outcome'][] {
  const outcomes = ack.results.filter((r) => !r.dup).map((r) => r.outcome);
  for (const [, count] of ack.runs ?? []) for (let i = 0; i < count; i++) outcomes.push('committed');
  return outcomes;
}
