import type pg from 'pg';
import { mergeLabels, noLabels, sortedLabels, type LabelChange } from '../labels.js';
import type { PgPool } from './pg-pool.js';

/**
 * Agents' labels on PostgreSQL (`agent_labels`, migration 4): a jsonb object per agent that has
 * any. Every change bumps `labels_version` in its transaction, so that hubs polling it learn of
 * the change when it commits, and not before.
 */
export class PgLabels {
  readonly #db: PgPool;

  constructor(db: PgPool) {
    this.#db = db;
  }

  async get(agentId: string): Promise<Record<string, string>> {
    const [row] = await this.#db.query<{ labels: Record<string, string> }>('SELECT labels FROM agent_labels WHERE agent_id = $1', [
      agentId,
    ]);
    return row ? sortedLabels(row.labels) : noLabels();
  }

  async all(): Promise<Map<string, Record<string, string>>> {
    const rows = await this.#db.query<{ agent_id: string; labels: Record<string, string> }>(
      'SELECT agent_id, labels FROM agent_labels ORDER BY agent_id',
    );
    return new Map(rows.map((r) => [r.agent_id, sortedLabels(r.labels)]));
  }

  /**
   * Applies a change in one transaction (ConfigError if it is refused, with nothing written); the
   * labels after it. The version is bumped first: its row lock makes label writers take turns, so
   * each merges into what the one before committed (a row lock on the agent's labels would not
   * exist yet for an agent that has none).
   */
  async set(agentId: string, change: LabelChange): Promise<Record<string, string>> {
    const client = await this.#db.wrap('write to', () => this.#db.pool.connect());
    const run = <R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> =>
      this.#db.wrap('write to', async () => (await client.query<R>(text, values)).rows);
    try {
      await run('BEGIN');
      try {
        await run("UPDATE hub_meta SET value = value + 1 WHERE name = 'labels_version'");
        // A statement of its own, after the lock: its snapshot holds what the writer before committed.
        const [row] = await run<{ labels: Record<string, string> }>('SELECT labels FROM agent_labels WHERE agent_id = $1', [agentId]);
        const current = row ? sortedLabels(row.labels) : noLabels();
        const next = mergeLabels(agentId, current, change);
        if (JSON.stringify(next) === JSON.stringify(current)) {
          // Nothing changed: the version stays, and hubs have nothing to reload.
          await run('ROLLBACK');
          return next;
        }
        if (Object.keys(next).length === 0) await run('DELETE FROM agent_labels WHERE agent_id = $1', [agentId]);
        else
          await run(
            `INSERT INTO agent_labels (agent_id, labels, updated_at) VALUES ($1, $2::jsonb, $3)
             ON CONFLICT (agent_id) DO UPDATE SET labels = excluded.labels, updated_at = excluded.updated_at`,
            [agentId, JSON.stringify(next), Date.now()],
          );
        await run('COMMIT');
        return next;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    } finally {
      client.release();
    }
  }

  async version(): Promise<number> {
    const [row] = await this.#db.query<{ value: number }>("SELECT value FROM hub_meta WHERE name = 'labels_version'");
    return row!.value;
  }
}
