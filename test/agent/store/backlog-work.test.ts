import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_PARTITION } from '../../../shared/topics.js';
import { tempDir } from '../../helpers/temp.js';
import { appendAll, change, openStore, put } from './fixtures.js';
import { valueOf } from '../../helpers/value-bytes.js';

type StatementMethod = 'run' | 'get' | 'all' | 'iterate';
const METHODS: StatementMethod[] = ['run', 'get', 'all', 'iterate'];
const statementPrototype = Object.getPrototypeOf(new Database(':memory:').prepare('SELECT 1')) as Record<
  StatementMethod,
  (...args: unknown[]) => unknown
> & { source?: string };
const originals = Object.fromEntries(METHODS.map((m) => [m, statementPrototype[m]])) as Record<
  StatementMethod,
  (...args: unknown[]) => unknown
>;

/** Records the SQL of every statement executed while `work` runs (the statements themselves run as ever). */
function executedDuring(work: () => void): Set<string> {
  const seen = new Set<string>();
  for (const m of METHODS) {
    statementPrototype[m] = function (this: { source: string }, ...args: unknown[]) {
      seen.add(this.source);
      return originals[m].apply(this, args);
    };
  }
  try {
    work();
  } finally {
    for (const m of METHODS) statementPrototype[m] = originals[m];
  }
  return seen;
}

afterEach(() => {
  for (const m of METHODS) statementPrototype[m] = originals[m];
});

/**
 * A device that was offline for long holds a large outbox; what it does per uploaded batch, per
 * ack and per status report must not grow with it. Checked structurally, on the query plans of
 * the statements the work executes: each must search an index for a bounded range, or stop at
 * the first row an index gives (LIMIT 1, no sort); a scan or a sort of the outbox reads every
 * pending row.
 */
describe('agent store: per-batch work does not grow with the backlog', () => {
  it('uploading a batch, taking its acks, applying changes, counting and reporting search the outbox, never scan it', () => {
    const dir = tempDir('backlog-work');
    const store = openStore(dir);
    const collections = ['readings', 'events', 'config'];
    for (let from = 0; from < 6_000; from += 1_000) {
      appendAll(
        store,
        Array.from({ length: 1_000 }, (_, i) => put(`k${from + i}`, from + i, { collection: collections[(from + i) % 3]! })),
      );
    }
    const executed = executedDuring(() => {
      for (let round = 0; round < 3; round++) {
        const first = store.outbox.lowestPendingSeq(DEFAULT_PARTITION)!;
        const batch = store.outbox.pendingFrom(DEFAULT_PARTITION, first, 100, 1 << 20);
        const results = batch.map((op, i) => ({ seq: op.seq, outcome: 'committed' as const, lsn: round * 100 + i + 1 }));
        store.outbox.applyResults(DEFAULT_PARTITION, results, () => true);
        // The change sets come back: they release the confirmed writes from the overlay.
        store.replica.applyChanges(
          DEFAULT_PARTITION,
          batch.map((op, i) => change(round * 100 + i + 1, op.k, valueOf(op), op.c)),
        );
        store.outbox.pendingCount();
        store.outbox.pendingByCollection();
        store.outbox.expire(() => 3600);
      }
    });
    expect(store.outbox.pendingCount()).toBe(5_700);
    const touchingOutbox = [...executed].filter((sql) => /\boutbox\b/.test(sql));
    expect(touchingOutbox.length).toBeGreaterThan(3);
    const reader = new Database(join(dir, 'agent.db'), { readonly: true });
    const plans = touchingOutbox.map((sql) => {
      const rows = reader.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...placeholders(sql)) as Array<{ detail: string }>;
      return { sql, plan: rows.map((r) => r.detail) };
    });
    reader.close();
    for (const { sql, plan } of plans) expect({ sql, unbounded: unbounded(sql, plan) }).toEqual({ sql, unbounded: [] });
  });
});

/** The steps of a plan that read the outbox without bound. */
function unbounded(sql: string, plan: readonly string[]): string[] {
  const firstRowOnly = /\bLIMIT 1$/.test(sql.trim()) && !plan.some((d) => d.includes('TEMP B-TREE'));
  return plan.filter((d) => /^SCAN outbox\b/.test(d) && !firstRowOnly);
}

/** Nulls for a statement's parameters (EXPLAIN needs them bound, not meaningful). */
function placeholders(sql: string): unknown[] | [Record<string, null>] {
  const named = [...sql.matchAll(/[@:$]([a-z_]+)/gi)].map((m) => m[1]!);
  if (named.length > 0) return [Object.fromEntries(named.map((n) => [n, null]))];
  return Array.from({ length: (sql.match(/\?/g) ?? []).length }, () => null);
}
