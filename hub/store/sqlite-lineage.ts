import { randomBytes } from 'node:crypto';
import { encodeCbor } from '../../shared/codec.js';
import type { Lineage, LostDocument, LostReport, ReapplyOutcome } from './hub-store.js';
import { LOST_COLUMNS, toLostDocument, type LostRow } from './lost-rows.js';
import type { SqliteConnection } from './sqlite-connection.js';

/**
 * A SQLite hub database's lineage (`hub_meta`: `lineage`, `fork`) and the versions agents report
 * that a restore lost (`lost_documents`, `lost_reporters`; migration 9).
 */
export class SqliteLineage {
  readonly #db: SqliteConnection;

  constructor(db: SqliteConnection) {
    this.#db = db;
  }

  /** The lineage as recorded (migration 9 gives every database one). */
  read(): Lineage {
    const meta = (name: string): string | undefined =>
      this.#db.statement<[string], { value: string }>('SELECT value FROM hub_meta WHERE name = ?').get(name)?.value;
    return { id: meta('lineage')!, fork: Number(meta('fork') ?? '0') };
  }

  /**
   * A new lineage parting at `head`, written while holding the database exclusively: a hub that
   * has it open makes this fail with HubRunningError, and no hub can open it meanwhile.
   */
  markRestored(head: number): Lineage {
    const lineage = { id: randomBytes(16).toString('hex'), fork: head };
    const set = this.#db.statement<[string, string]>(
      'INSERT INTO hub_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
    );
    this.#db.exclusively(() => {
      set.run('lineage', lineage.id);
      set.run('fork', String(lineage.fork));
    });
    return lineage;
  }

  recordLost(report: LostReport, at: number): void {
    const doc = this.#db.statement(
      `INSERT INTO lost_documents (lineage, collection, key, version, fork, op, value, hlc, origin, reported_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    const reporter = this.#db.statement(
      'INSERT INTO lost_reporters (lineage, collection, key, version, agent_id, at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
    );
    this.#db.transaction(() => {
      for (const d of report.docs) {
        const value = d.value === undefined ? null : encodeCbor(d.value);
        doc.run(report.lineage, d.collection, d.key, d.version, report.fork, d.op, value, d.hlc, d.origin, at);
        reporter.run(report.lineage, d.collection, d.key, d.version, report.agentId, at);
      }
    });
  }

  lostDocuments(query: { pending?: boolean; limit: number }): LostDocument[] {
    return this.#db
      .statement<[number], LostRow>(
        `SELECT ${LOST_COLUMNS},
           (SELECT json_group_array(json_object('agentId', r.agent_id, 'at', r.at)) FROM lost_reporters r
            WHERE r.lineage = d.lineage AND r.collection = d.collection AND r.key = d.key AND r.version = d.version) AS reporters
         FROM lost_documents d ${query.pending ? 'WHERE d.reapplied_at IS NULL' : ''}
         ORDER BY d.reported_at, d.lineage, d.collection, d.key, d.version LIMIT ?`,
      )
      .all(query.limit)
      .map(toLostDocument);
  }

  markReapplied(outcomes: readonly ReapplyOutcome[], at: number): void {
    const mark = this.#db.statement(
      `UPDATE lost_documents SET reapplied_at = ?, reapply_outcome = ?, reapply_lsn = ?, reapply_reason = ?
       WHERE lineage = ? AND collection = ? AND key = ? AND version = ? AND reapplied_at IS NULL`,
    );
    this.#db.transaction(() => {
      for (const o of outcomes) mark.run(at, o.outcome, o.lsn, o.reason, o.lineage, o.collection, o.key, o.version);
    });
  }
}
