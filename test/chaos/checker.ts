import { outcomeReader } from '../helpers/hub-outcomes.js';
import { hasArchive } from './archive.js';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { checkBlobs } from './blobs.js';
import type { History } from './history.js';
import { committedOutside, outsideScope, scopedDivergence, scopeOutcomeProblem } from './scope-check.js';
import { isScoped } from './scope-plan.js';

export interface Verdict {
  acknowledged: number;
  /** Blobs acknowledged (blobs.ts), each checked by its content's hash. */
  blobs: number;
  committed: number;
  rejected: number;
  /** Of those rejected, refused as out of their agent's scope. */
  scopeRefused: number;
  conflicts: number;
  /** Writes whose dedup state retention had removed by the end (their outcome read from the archive). */
  pruned: number;
  lost: string[];
  duplicated: string[];
  misordered: string[];
  diverged: string[];
  wrongOutcome: string[];
  corrupt: string[];
  regressions: string[];
  /** Changes of scoped collections that reached an agent's credentials outside any scope it had (scope-check.ts). */
  outsideScope: string[];
  /** Rot faults injected, and those the damaged agent never reported as found (run.ts fills them in). */
  rots: number;
  undetectedRot: string[];
}

export function clean(v: Verdict): boolean {
  return [v.lost, v.duplicated, v.misordered, v.diverged, v.wrongOutcome, v.corrupt, v.regressions, v.outsideScope, v.undetectedRot].every(
    (l) => l.length === 0,
  );
}

/** One line, the same for every run: what the run did and what it found. */
export function summaryLine(v: Verdict, faults: number, seed: number): string {
  return (
    `chaos: acknowledged=${v.acknowledged} blobs=${v.blobs} committed=${v.committed} rejected=${v.rejected} scope-refused=${v.scopeRefused} conflicts=${v.conflicts} ` +
    `lost=${v.lost.length} duplicated=${v.duplicated.length} diverged=${v.diverged.length} outsideScope=${v.outsideScope.length} misordered=${v.misordered.length} ` +
    `wrong-outcome=${v.wrongOutcome.length} corrupt=${v.corrupt.length} backwards=${v.regressions.length} dedup-pruned=${v.pruned} ` +
    `rot=${v.rots} rot-undetected=${v.undetectedRot.length} ` +
    `faults=${faults} seed=${seed}`
  );
}

/**
 * Reads the databases of a quiet fleet (every process stopped or idle) and checks the
 * guarantees of the design brief against the history of acknowledged writes.
 */
export function check(dir: string, agentIds: readonly string[], history: History): Verdict {
  const hub = new Database(join(dir, 'hub', 'hub.db'), { readonly: true });
  const v: Verdict = {
    acknowledged: history.writes.length,
    blobs: history.blobs.length,
    committed: 0,
    rejected: 0,
    scopeRefused: 0,
    conflicts: 0,
    pruned: 0,
    lost: [],
    duplicated: [],
    misordered: [],
    diverged: [],
    wrongOutcome: [],
    corrupt: [],
    regressions: [...history.regressions],
    outsideScope: outsideScope(history),
    rots: history.rots.length,
    undetectedRot: history.rots.filter((r) => !r.detected).map((r) => `${r.kind} of ${r.key} at ${r.agentId}`),
  };
  try {
    integrity(hub, 'hub', v);
    // Retention prunes the log and the dedup state; the archive (see archive.ts) keeps a copy of
    // both, written in the hub's own transactions, against which every promise is checked.
    if (!hasArchive(hub)) throw new Error('the hub database has no checker archive: start the hub through ProcessFleet');
    const live = outcomeReader(hub);
    const archived = outcomeReader(hub, { runs: 'checker_runs', outcomes: 'checker_outcomes' });
    const logged = hub.prepare<[string, string, number], { n: number; lsn: number | null }>(
      'SELECT count(*) AS n, max(lsn) AS lsn FROM checker_log WHERE origin = ? AND incarnation = ? AND seq = ?',
    );
    const lastSeq = hub.prepare<[string, string], { last_seq: number }>(
      'SELECT last_seq FROM agent_sequences WHERE agent_id = ? AND incarnation = ?',
    );
    const archivedConflict = hub.prepare<[string, string, number], { n: number }>(
      'SELECT count(*) AS n FROM conflicts WHERE loser_origin = ? AND loser_incarnation = ? AND loser_seq = ?',
    );
    for (const w of history.writes) {
      const id = `${w.agentId}/${w.incarnation.slice(0, 6)}/${w.seq}`;
      const o = archived(w.agentId, w.incarnation, w.seq);
      if (!o) {
        v.lost.push(id);
        continue;
      }
      const kept = live(w.agentId, w.incarnation, w.seq);
      if (!kept) v.pruned += 1;
      else if (kept.outcome !== o.outcome || kept.lsn !== o.lsn)
        v.wrongOutcome.push(`${id} is recorded as ${kept.outcome} but was ${o.outcome}`);
      // Exactly-once after pruning rests on this alone: a redelivered op at or below it is never applied.
      if ((lastSeq.get(w.agentId, w.incarnation)?.last_seq ?? 0) < w.seq) v.wrongOutcome.push(`${id} is above its incarnation's last seq`);
      if (o.outcome === 'committed') {
        v.committed += 1;
        const { n, lsn } = logged.get(w.agentId, w.incarnation, w.seq)!;
        if (n !== 1 || lsn !== o.lsn) v.lost.push(`${id} (committed at ${o.lsn}, ${n} log entries)`);
        if (w.lsn !== undefined && w.lsn !== o.lsn) v.wrongOutcome.push(`${id} acknowledged with LSN ${w.lsn}, committed at ${o.lsn}`);
        if (w.poison) v.wrongOutcome.push(`${id} is a poison write but was committed`);
      } else if (o.outcome === 'conflict') {
        v.conflicts += 1;
        if (archivedConflict.get(w.agentId, w.incarnation, w.seq)!.n !== 1)
          v.wrongOutcome.push(`${id} lost a conflict but its version is not archived`);
      } else if (o.outcome === 'rejected') {
        v.rejected += 1;
        if (o.reason === 'out_of_scope') v.scopeRefused += 1;
        else if (!w.poison) v.wrongOutcome.push(`${id} was rejected (${o.reason ?? 'no reason'})`);
      }
      const scopeProblem = scopeOutcomeProblem(w, o, history);
      if (scopeProblem) v.wrongOutcome.push(`${id} (${w.collection}/${w.key}) ${scopeProblem}`);
    }
    for (const row of hub
      .prepare<[], { origin: string; incarnation: string; seq: number; n: number }>(
        'SELECT origin, incarnation, seq, count(*) AS n FROM checker_log WHERE seq IS NOT NULL GROUP BY 1, 2, 3 HAVING n > 1',
      )
      .all()) {
      v.duplicated.push(`${row.origin}/${row.incarnation.slice(0, 6)}/${row.seq} ×${row.n}`);
    }
    v.wrongOutcome.push(...committedOutside(hub));
    checkBlobs(hub, join(dir, 'hub'), history, v);
    for (const agentId of agentIds) {
      const rows = hub
        .prepare<[string], { incarnation: string; seq: number; lsn: number }>(
          'SELECT incarnation, seq, lsn FROM checker_log WHERE origin = ? ORDER BY lsn',
        )
        .all(agentId);
      for (let i = 1; i < rows.length; i++) {
        if (rows[i]!.incarnation === rows[i - 1]!.incarnation && rows[i]!.seq < rows[i - 1]!.seq) {
          v.misordered.push(`${agentId}: seq ${rows[i]!.seq} at LSN ${rows[i]!.lsn} after seq ${rows[i - 1]!.seq}`);
        }
      }
    }
    const hubDigests = digests(hub);
    for (const agentId of agentIds) {
      const db = new Database(join(dir, agentId, 'agent.db'), { readonly: true });
      try {
        integrity(db, agentId, v);
        const mine = digests(db);
        for (const [c, digest] of hubDigests) {
          if (!isScoped(c) && mine.get(c) !== digest) v.diverged.push(`${agentId}: collection ${c}`);
        }
        v.diverged.push(...scopedDivergence(hub, db, agentId));
      } finally {
        db.close();
      }
    }
  } finally {
    hub.close();
  }
  return v;
}

function integrity(db: Database.Database, name: string, v: Verdict): void {
  const result = db.pragma('integrity_check', { simple: true });
  if (result !== 'ok') v.corrupt.push(`${name}: ${String(result)}`);
}

/** A digest per collection of the live documents: key, version and value. */
function digests(db: Database.Database): Map<string, string> {
  const out = new Map<string, ReturnType<typeof createHash>>();
  for (const row of db
    .prepare<[], { collection: string; key: string; version: number; value: Buffer | null }>(
      'SELECT collection, key, version, value FROM documents WHERE deleted = 0 ORDER BY collection, key',
    )
    .iterate()) {
    let h = out.get(row.collection);
    if (!h) out.set(row.collection, (h = createHash('sha256')));
    h.update(`${row.key}\u0000${row.version}\u0000`).update(row.value ?? Buffer.alloc(0));
  }
  return new Map([...out].map(([c, h]) => [c, h.digest('hex')]));
}
