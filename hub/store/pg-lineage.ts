import { randomBytes } from 'node:crypto';
import { encodeCbor } from '../../shared/codec.js';
import { HubRunningError } from '../../shared/errors.js';
import { leaderLockKey } from '../leadership.js';
import type { Lineage, LostDocument, LostReport, ReapplyOutcome } from './hub-store.js';
import { LOST_COLUMNS, toLostDocument, type LostRow } from './lost-rows.js';
import type { PgPool } from './pg-pool.js';

/**
 * A PostgreSQL hub database's lineage (the one-row `lineage` table: `hub_meta` holds numbers
 * only) and the versions agents report that a restore lost (`lost_documents`, `lost_reporters`;
 * migration 3).
 */
export class PgLineage {
  readonly #db: PgPool;

  constructor(db: PgPool) {
    this.#db = db;
  }

  async read(): Promise<Lineage> {
    const [row] = await this.#db.query<{ id: string; fork: number }>('SELECT id, fork FROM lineage');
    return { id: row!.id, fork: row!.fork };
  }

  /**
   * A new lineage parting at the head, taken while holding the partition's leader lock: a hub
   * leading the partition (or standing by with it) makes this fail with HubRunningError.
   */
  async markRestored(partition: string): Promise<Lineage> {
    const key = leaderLockKey(partition);
    const params = key.length === 1 ? '$1' : '$1::int4, $2::int4';
    const client = await this.#db.wrap('write to', () => this.#db.pool.connect());
    try {
      const { rows } = await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock(${params}) AS locked`, [...key]);
      if (!rows[0]!.locked) throw new HubRunningError(`${this.#db.where}, partition ${partition}`);
      try {
        const id = randomBytes(16).toString('hex');
        const { rows: updated } = await this.#db.wrap('write to', () =>
          client.query<{ fork: number }>(
            `UPDATE lineage SET id = $1, fork = (SELECT GREATEST(l.head_lsn, (SELECT value FROM hub_meta WHERE name = 'pruned_through'))
               FROM leadership l) RETURNING fork`,
            [id],
          ),
        );
        return { id, fork: updated[0]!.fork };
      } finally {
        await client.query(`SELECT pg_advisory_unlock(${params})`, [...key]).catch(() => undefined);
      }
    } finally {
      client.release();
    }
  }

  async recordLost(report: LostReport, at: number): Promise<void> {
    const { docs } = report;
    if (docs.length === 0) return;
    const column = <T>(pick: (d: LostReport['docs'][number]) => T): T[] => docs.map(pick);
    await this.#db.query(
      `WITH reported AS (
         SELECT * FROM unnest($3::text[], $4::text[], $5::bigint[], $6::text[], $7::bytea[], $8::text[], $9::text[])
           AS r(collection, key, version, op, value, hlc, origin)
       ), docs AS (
         INSERT INTO lost_documents (lineage, collection, key, version, fork, op, value, hlc, origin, reported_at)
         SELECT $1, collection, key, version, $2, op, value, hlc, origin, $10 FROM reported ON CONFLICT DO NOTHING
       )
       INSERT INTO lost_reporters (lineage, collection, key, version, agent_id, at)
       SELECT $1, collection, key, version, $11, $10 FROM reported ON CONFLICT DO NOTHING`,
      [
        report.lineage,
        report.fork,
        column((d) => d.collection),
        column((d) => d.key),
        column((d) => d.version),
        column((d) => d.op),
        column((d) => (d.value === undefined ? null : encodeCbor(d.value))),
        column((d) => d.hlc),
        column((d) => d.origin),
        at,
        report.agentId,
      ],
      'write to',
    );
  }

  async lostDocuments(query: { pending?: boolean; limit: number }): Promise<LostDocument[]> {
    const rows = await this.#db.query<LostRow>(
      `SELECT ${LOST_COLUMNS},
         (SELECT json_agg(json_build_object('agentId', r.agent_id, 'at', r.at))::text FROM lost_reporters r
          WHERE r.lineage = d.lineage AND r.collection = d.collection AND r.key = d.key AND r.version = d.version) AS reporters
       FROM lost_documents d ${query.pending ? 'WHERE d.reapplied_at IS NULL' : ''}
       ORDER BY d.reported_at, d.lineage, d.collection, d.key, d.version LIMIT $1`,
      [query.limit],
    );
    return rows.map(toLostDocument);
  }

  async markReapplied(outcomes: readonly ReapplyOutcome[], at: number): Promise<void> {
    if (outcomes.length === 0) return;
    const column = <T>(pick: (o: ReapplyOutcome) => T): T[] => outcomes.map(pick);
    await this.#db.query(
      `UPDATE lost_documents d SET reapplied_at = $1, reapply_outcome = o.outcome, reapply_lsn = o.lsn, reapply_reason = o.reason
       FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[], $8::text[])
         AS o(lineage, collection, key, version, outcome, lsn, reason)
       WHERE d.lineage = o.lineage AND d.collection = o.collection AND d.key = o.key AND d.version = o.version
         AND d.reapplied_at IS NULL`,
      [
        at,
        column((o) => o.lineage),
        column((o) => o.collection),
        column((o) => o.key),
        column((o) => o.version),
        column((o) => o.outcome),
        column((o) => o.lsn),
        column((o) => o.reason),
      ],
      'write to',
    );
  }
}
