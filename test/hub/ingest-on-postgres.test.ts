import { afterEach, describe, expect, test } from 'vitest';
import { encodeHlc, HybridClock } from '../../shared/hlc.js';
import type { WriteOp } from '../../shared/messages.js';
import { CollectionPolicies, parseHubConfig } from '../../hub/config.js';
import { defaultIngestOptions, Ingestor, type IngestOutput, type IngestRequest } from '../../hub/ingest.js';
import type { HubStore } from '../../hub/store/hub-store.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { freshDatabase, NO_POSTGRES } from '../helpers/postgres.js';
import { prng } from '../helpers/prng.js';
import { tempDir } from '../helpers/temp.js';
import { encodeValue } from '../../shared/value-bytes.js';
import { plainBytes } from '../helpers/value-bytes.js';

const AGENTS = ['pi-a', 'pi-b', 'pi-c'];
const INCARNATIONS = ['a'.repeat(32), 'b'.repeat(32)];
const COLLECTIONS = ['notes', 'orders', 'profiles'];
const CONFIG = parseHubConfig({
  collections: { notes: { conflict: 'lww' }, orders: { conflict: 'reject' }, profiles: { conflict: 'merge' } },
});
const NOW = Date.now();

/**
 * The real Ingestor on both stores, fed the same random group commits (new ops, redeliveries,
 * gaps, reused seqs, skips, hub writes, conflicts under every policy, the same key twice):
 * every reply, change set and result, and the state left behind, must be the same. The
 * PostgreSQL store's in-memory transaction is thus checked against SQLite's real one.
 */
describe.skipIf(NO_POSTGRES !== undefined)(
  `the Ingestor on PostgreSQL answers as on SQLite${NO_POSTGRES ? ` (${NO_POSTGRES})` : ''}`,
  () => {
    const opened: HubStore[] = [];
    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close();
    });

    for (const seed of [1, 2, 3]) {
      test(`seed ${seed}: 40 group commits`, async () => {
        const sqlite = new SqliteHubStore(tempDir('ingest-diff'));
        const postgres = await PostgresHubStore.open(await freshDatabase());
        opened.push(sqlite, postgres);
        const ingestorOn = (store: HubStore): Ingestor =>
          new Ingestor(store, new HybridClock(() => NOW), new CollectionPolicies(CONFIG), defaultIngestOptions);
        const [onSqlite, onPostgres] = [ingestorOn(sqlite), ingestorOn(postgres)];
        const workload = new Workload(prng(seed));
        for (let step = 0; step < 40; step++) {
          const requests = workload.groupCommit(sqlite.head);
          const expected: IngestOutput = plainBytes(await onSqlite.ingest(requests));
          expect(plainBytes(await onPostgres.ingest(requests)), `step ${step}`).toEqual(expected);
          expect(postgres.head).toBe(sqlite.head);
          await workload.learn(sqlite);
        }
        expect(await stateOf(postgres, workload)).toEqual(await stateOf(sqlite, workload));
      });
    }
  },
);

/** Random group commits that follow what each agent incarnation has had processed. */
class Workload {
  /** Ops each incarnation has had processed, by seq (index seq - 1). */
  readonly sent = new Map<string, WriteOp[]>();
  #hlc = 0;

  constructor(private readonly random: () => number) {}

  groupCommit(head: number): IngestRequest[] {
    return Array.from({ length: 1 + this.#int(3) }, () => this.#request(head));
  }

  /** Keeps only the ops the hub processed (a gap or a reused seq stops a batch). */
  async learn(store: HubStore): Promise<void> {
    for (const agentId of AGENTS) {
      const last = await store.lastSeqs(agentId);
      for (const inc of INCARNATIONS) {
        const ops = this.sent.get(`${agentId}/${inc}`);
        if (ops) ops.length = Math.min(ops.length, last[inc] ?? 0);
      }
    }
  }

  #request(head: number): IngestRequest {
    const roll = this.random();
    if (roll < 0.15) {
      const op = this.#op(0, head);
      return {
        kind: 'hub',
        write: {
          c: op.c,
          k: op.k,
          op: op.op === 'skip' ? 'del' : op.op,
          ...(op.v !== undefined && { v: op.v }),
          ...(op.base !== undefined && { base: op.base }),
        },
      };
    }
    const agentId = this.#pick(AGENTS);
    const inc = this.#pick(INCARNATIONS);
    const history = this.sent.get(`${agentId}/${inc}`) ?? [];
    this.sent.set(`${agentId}/${inc}`, history);
    const next = history.length + 1;
    let ops: WriteOp[];
    if (roll < 0.3 && history.length > 0) {
      // A redelivery of a processed run, maybe with new ops behind it.
      const from = this.#int(history.length);
      ops = [...history.slice(from, from + 1 + this.#int(4)), ...this.#fresh(next, this.#int(2), head)];
    } else if (roll < 0.37 && history.length > 0) {
      // The same seq with other content: a device restored from an old backup.
      ops = [{ ...this.#op(this.#int(history.length) + 1, head), v: encodeValue('restored') }];
    } else if (roll < 0.42) {
      ops = this.#fresh(next + 1 + this.#int(2), 2, head); // a gap
    } else {
      ops = this.#fresh(next, 1 + this.#int(5), head);
    }
    if (ops.length === 0) ops = this.#fresh(next, 1, head);
    for (const op of ops) if (op.seq === history.length + 1) history.push(op);
    return { kind: 'batch', agentId, batch: { inc, ops } };
  }

  #fresh(from: number, count: number, head: number): WriteOp[] {
    return Array.from({ length: count }, (_, i) => this.#op(from + i, head));
  }

  #op(seq: number, head: number): WriteOp {
    const c = this.#pick(COLLECTIONS);
    const k = `k${this.#int(4)}`;
    // Mostly in order, some older (conflicts under lww and merge), a few an hour ahead (rejected,
    // with a detail in whole seconds from the real clock: kept half a second from rounding).
    const hlc =
      this.random() < 0.05
        ? encodeHlc(Date.now() + 3_600_250, 0)
        : encodeHlc(NOW + (this.#hlc += 1 + this.#int(3)) - this.#int(8), this.#int(3));
    const base = this.random() < 0.5 ? this.#int(head + 1) : undefined;
    const roll = this.random();
    const write = { seq, c, k, hlc, ...(base !== undefined && { base }) };
    if (roll < 0.1) return { ...write, op: 'del' };
    if (roll < 0.15) return { seq, c, k, hlc, op: 'skip', v: encodeValue('expired') };
    if (roll < 0.45)
      return { ...write, op: 'patch', v: encodeValue({ [this.#pick(['a', 'b', 'c'])]: this.random() < 0.2 ? null : this.#int(100) }) };
    return { ...write, op: 'put', v: encodeValue({ a: this.#int(100), text: 'é'.repeat(this.#int(3)) }) };
  }

  #int(below: number): number {
    return Math.floor(this.random() * below);
  }

  #pick<T>(items: readonly T[]): T {
    return items[this.#int(items.length)]!;
  }
}

/** Everything the hub could be asked afterwards (times and ids aside, which differ by store). */
async function stateOf(store: HubStore, workload: Workload): Promise<unknown> {
  const outcomes: unknown[] = [];
  for (const [id, ops] of workload.sent) {
    const [agentId, inc] = id.split('/') as [string, string];
    for (let seq = 1; seq <= ops.length + 1; seq++) outcomes.push([id, seq, await store.outcomeOf(agentId, inc, seq)]);
  }
  return plainBytes({
    head: store.head,
    log: await store.readLog(0, undefined, 100_000, Number.MAX_SAFE_INTEGER),
    documents: await store.readDocuments(undefined, undefined, 100_000, Number.MAX_SAFE_INTEGER),
    documentsInFull: await Promise.all(COLLECTIONS.flatMap((c) => [0, 1, 2, 3].map((k) => store.document(c, `k${k}`)))),
    heads: await store.collectionHeads(),
    conflicts: (await store.conflicts({ limit: 100_000 })).map(({ id: _id, at: _at, ...c }) => c),
    // Rejections of one group commit share a time, and ties have no order: compare as a set.
    rejections: (await store.rejections(100_000)).map(({ at: _at, ...r }) => JSON.stringify(r)).sort(),
    lastSeqs: await Promise.all(AGENTS.map((a) => store.lastSeqs(a))),
    outcomes,
  });
}
