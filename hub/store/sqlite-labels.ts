import { mergeLabels, noLabels, sortedLabels, type LabelChange } from '../labels.js';
import type { SqliteConnection } from './sqlite-connection.js';

/**
 * Agents' labels on SQLite (`agent_labels`, migration 10): a JSON object per agent that has any.
 * A change is read, merged and written in one IMMEDIATE transaction, so two writers at once
 * cannot lose each other's labels or pass the bound on their number together. Each change
 * bumps `labels_version` in the same transaction, which hubs watch.
 */
export class SqliteLabels {
  readonly #db: SqliteConnection;

  constructor(db: SqliteConnection) {
    this.#db = db;
  }

  /** Changes with every change of labels, from any connection. */
  version(): number {
    const row = this.#db.statement<[], { value: number | string }>("SELECT value FROM hub_meta WHERE name = 'labels_version'").get();
    return Number(row?.value ?? 0);
  }

  get(agentId: string): Record<string, string> {
    const row = this.#db.statement<[string], { labels: string }>('SELECT labels FROM agent_labels WHERE agent_id = ?').get(agentId);
    return row ? parse(row.labels) : noLabels();
  }

  all(): Map<string, Record<string, string>> {
    const rows = this.#db
      .statement<[], { agent_id: string; labels: string }>('SELECT agent_id, labels FROM agent_labels ORDER BY agent_id')
      .all();
    return new Map(rows.map((r) => [r.agent_id, parse(r.labels)]));
  }

  /** Applies a change (ConfigError if it is refused, with nothing written); the labels after it. */
  set(agentId: string, change: LabelChange): Record<string, string> {
    return this.#db.transaction(() => {
      const current = this.get(agentId);
      const next = mergeLabels(agentId, current, change);
      // Nothing changed: nothing written, so hubs watching the version have nothing to reload.
      if (JSON.stringify(next) === JSON.stringify(current)) return next;
      this.#db.statement("UPDATE hub_meta SET value = value + 1 WHERE name = 'labels_version'").run();
      if (Object.keys(next).length === 0) {
        this.#db.statement('DELETE FROM agent_labels WHERE agent_id = ?').run(agentId);
      } else {
        this.#db
          .statement(
            `INSERT INTO agent_labels (agent_id, labels, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (agent_id) DO UPDATE SET labels = excluded.labels, updated_at = excluded.updated_at`,
          )
          .run(agentId, JSON.stringify(next), Date.now());
      }
      return next;
    });
  }
}

/** Stored labels, names in order (JSON.parse keeps a `__proto__` name as an own key). */
function parse(text: string): Record<string, string> {
  return sortedLabels(JSON.parse(text) as Record<string, string>);
}
