import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeCbor, encodeCbor } from '../shared/codec.js';
import { DatabaseTooNewError, OutboxFullError, StorageFailedError, StorageFullError } from '../shared/errors.js';
import { ZERO_HLC, type Hlc } from '../shared/hlc.js';
import type { Change, OpResult, WriteOp } from '../shared/messages.js';
import { DEFAULT_PARTITION } from '../shared/topics.js';
import { applyPatch, type JsonValue } from '../shared/values.js';
import { AGENT_MIGRATIONS } from './schema.js';

/** The lane of the hub's default partition. */
export const DEFAULT_LANE = DEFAULT_PARTITION;

export type WriteKind = 'put' | 'patch' | 'del';

export interface NewWrite {
  /** The partition whose sequence space the write joins (default: the default partition). */
  lane?: string;
  collection: string;
  key: string;
  op: WriteKind;
  value: JsonValue | undefined;
  hlc: Hlc;
  /** The version the write is made against; defaults to the replica's current version. */
  base?: number;
  /** Ask the hub to report once this many other agents have applied the write. */
  rep?: number;
}

/** What the agent does with a collection's writes while it cannot upload them (from the hub's policies). */
export interface Buffering {
  maxPending: number;
  overflow: 'reject' | 'drop-oldest';
}

/** Per write, its seq or why it was refused; and the writes dropped to make room. */
export interface AppendResult {
  seqs: Array<number | OutboxFullError>;
  dropped: Rejection[];
}

/** A write given a place in another partition's sequence (see AgentStore.adoptAssignment): where it was, where it is now. */
export interface MovedWrite {
  from: { incarnation: string; seq: number };
  to: { partition: string; incarnation: string; seq: number };
}

/** A document as an app sees it. `pending` says the device's own unconfirmed writes shaped it. */
export interface AgentDocument {
  collection: string;
  key: string;
  value: JsonValue;
  /** LSN of the confirmed version underneath (0 if the hub has not confirmed any yet). */
  version: number;
  pending: boolean;
}

export interface Rejection {
  seq: number;
  collection: string;
  key: string;
  op: WriteKind;
  value: JsonValue | undefined;
  /** `expired` and `dropped`: given up on this device before upload (TTL, overflow policy). */
  outcome: 'rejected' | 'conflict' | 'duplicate' | 'expired' | 'dropped';
  reason: string | null;
  detail: string | null;
  at: number;
}

interface DocRow {
  value: Buffer | null;
  deleted: number;
  version: number;
}
interface PendingRow {
  lane: string;
  seq: number;
  collection: string;
  key: string;
  op: WriteKind;
  value: Buffer | null;
  hlc: string;
  base: number;
  rep?: number | null;
  skipped?: string | null;
}

/** Where a lane's state is kept in `meta`: the default lane keeps the names it always had. */
const laneMeta = (name: string, lane: string): string => (lane === DEFAULT_LANE ? name : `${name}:${lane}`);

/**
 * The agent's SQLite database: the confirmed replica, the durable outbox of pending writes,
 * the per-collection applied LSNs, and the rejections apps can read. synchronous=FULL, so a
 * write resolved to an app survives power loss. Every method is synchronous.
 *
 * The outbox and the sync progress are kept per lane: one lane per partition of the hub (see
 * shared/topics.ts), each with its own incarnation and sequence space, watermark and snapshot
 * progress, because each partition is a separate log with its own LSNs. Documents and cursors
 * are per collection, and a collection belongs to one partition.
 */
export class AgentStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #s;
  /** Per lane: its incarnation and next seq (loaded on first use). */
  readonly #lanes = new Map<string, { incarnation: string; nextSeq: number }>();
  #storageLimit: number | undefined;

  constructor(dataDir: string) {
    this.path = join(dataDir, 'agent.db');
    try {
      mkdirSync(dataDir, { recursive: true });
      this.#db = new Database(this.path);
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma('synchronous = FULL');
      this.#db.pragma('busy_timeout = 5000');
      this.#migrate();
    } catch (cause) {
      throw new StorageFailedError(this.path, 'open', { cause });
    }
    const db = this.#db;
    this.#s = {
      meta: db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE name = ?'),
      setMeta: db.prepare('INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value'),
      deleteMeta: db.prepare('DELETE FROM meta WHERE name = ?'),
      document: db.prepare<[string, string], DocRow>('SELECT value, deleted, version FROM documents WHERE collection = ? AND key = ?'),
      upsertDocument: db.prepare(
        `INSERT INTO documents (collection, key, value, deleted, version, hlc, origin) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value, deleted = excluded.deleted,
           version = excluded.version, hlc = excluded.hlc, origin = excluded.origin
         WHERE excluded.version > documents.version`,
      ),
      insertOutbox: db.prepare(
        'INSERT INTO outbox (lane, seq, collection, key, op, value, hlc, base, created_at, rep) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      pendingForDoc: db.prepare<[string, string, number], { op: WriteKind; value: Buffer | null }>(
        `SELECT op, value FROM outbox WHERE collection = ? AND key = ? AND skipped IS NULL AND (acked_lsn IS NULL OR acked_lsn > ?) ORDER BY seq`,
      ),
      pendingFrom: db.prepare<[string, number, number], PendingRow>(
        'SELECT lane, seq, collection, key, op, value, hlc, base, rep, skipped FROM outbox WHERE lane = ? AND seq >= ? AND acked_lsn IS NULL ORDER BY seq LIMIT ?',
      ),
      lowestPending: db.prepare<[string], { seq: number | null }>(
        'SELECT min(seq) AS seq FROM outbox WHERE lane = ? AND acked_lsn IS NULL',
      ),
      pendingCount: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM outbox WHERE acked_lsn IS NULL'),
      outboxRow: db.prepare<[string, number], PendingRow>(
        'SELECT lane, seq, collection, key, op, value, hlc, base, skipped FROM outbox WHERE lane = ? AND seq = ?',
      ),
      pendingInCollection: db.prepare<[string], { n: number }>(
        'SELECT count(*) AS n FROM outbox WHERE collection = ? AND acked_lsn IS NULL AND skipped IS NULL',
      ),
      oldestInCollection: db.prepare<[string], PendingRow & { created_at: number }>(
        'SELECT lane, seq, collection, key, op, value, hlc, base, created_at FROM outbox WHERE collection = ? AND acked_lsn IS NULL AND skipped IS NULL ORDER BY seq LIMIT 1',
      ),
      olderThan: db.prepare<[string, number], PendingRow>(
        'SELECT lane, seq, collection, key, op, value, hlc, base FROM outbox WHERE collection = ? AND acked_lsn IS NULL AND skipped IS NULL AND created_at < ? ORDER BY seq',
      ),
      pendingCollections: db.prepare<[], { collection: string }>(
        'SELECT DISTINCT collection FROM outbox WHERE acked_lsn IS NULL AND skipped IS NULL',
      ),
      skip: db.prepare('UPDATE outbox SET skipped = ?, value = NULL WHERE lane = ? AND seq = ?'),
      pendingByCollection: db.prepare<[], { collection: string; n: number; oldest: number }>(
        'SELECT collection, count(*) AS n, min(created_at) AS oldest FROM outbox WHERE acked_lsn IS NULL AND skipped IS NULL GROUP BY collection ORDER BY collection',
      ),
      markAcked: db.prepare('UPDATE outbox SET acked_lsn = ? WHERE lane = ? AND seq = ?'),
      deleteOutbox: db.prepare('DELETE FROM outbox WHERE lane = ? AND seq = ?'),
      anyConfirmed: db.prepare<[], { one: number }>('SELECT 1 AS one FROM outbox WHERE acked_lsn IS NOT NULL LIMIT 1'),
      releaseConfirmed: db.prepare('DELETE FROM outbox WHERE collection = ? AND key = ? AND acked_lsn IS NOT NULL AND acked_lsn <= ?'),
      insertRejection: db.prepare(
        `INSERT INTO rejections (incarnation, seq, collection, key, op, value, outcome, reason, detail, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      rejections: db.prepare<[number], Omit<Rejection, 'value'> & { value: Buffer | null }>(
        'SELECT seq, collection, key, op, value, outcome, reason, detail, at FROM rejections ORDER BY id DESC LIMIT ?',
      ),
      cursor: db.prepare<[string], { applied_lsn: number }>('SELECT applied_lsn FROM cursors WHERE collection = ?'),
      advanceCursor: db.prepare(
        `INSERT INTO cursors (collection, applied_lsn) VALUES (?, ?)
         ON CONFLICT (collection) DO UPDATE SET applied_lsn = max(applied_lsn, excluded.applied_lsn)`,
      ),
      cursors: db.prepare<[], { collection: string; applied_lsn: number }>(
        'SELECT collection, applied_lsn FROM cursors ORDER BY collection',
      ),
      documentCollections: db.prepare<[], { collection: string }>('SELECT DISTINCT collection FROM documents'),
      confirmedKeys: db.prepare<[string, string, number], { key: string }>(
        'SELECT key FROM documents WHERE collection = ? AND key >= ? AND deleted = 0 ORDER BY key LIMIT ?',
      ),
      pendingKeys: db.prepare<[string, string], { key: string }>(
        'SELECT DISTINCT key FROM outbox WHERE collection = ? AND key >= ? AND skipped IS NULL ORDER BY key',
      ),
    };
    this.#lane(DEFAULT_LANE); // a new database is born with its default incarnation
  }

  #lane(lane: string): { incarnation: string; nextSeq: number } {
    let state = this.#lanes.get(lane);
    if (!state) {
      state = {
        incarnation: this.#meta(laneMeta('incarnation', lane)) ?? this.#born(lane),
        nextSeq: Number(this.#meta(laneMeta('next_seq', lane)) ?? '1'),
      };
      this.#lanes.set(lane, state);
    }
    return state;
  }

  #migrate(): void {
    const version = this.#db.pragma('user_version', { simple: true }) as number;
    if (version > AGENT_MIGRATIONS.length) {
      throw new DatabaseTooNewError(`the agent database ${this.path}`, version, AGENT_MIGRATIONS.length);
    }
    this.#db
      .transaction(() => {
        for (let v = version; v < AGENT_MIGRATIONS.length; v++) this.#db.exec(AGENT_MIGRATIONS[v]!);
        this.#db.pragma(`user_version = ${AGENT_MIGRATIONS.length}`);
      })
      .immediate();
  }

  /** The default lane's sequence space; see `reincarnate`. */
  get incarnation(): string {
    return this.incarnationOf(DEFAULT_LANE);
  }

  /** A lane's sequence space. */
  incarnationOf(lane: string): string {
    return this.#lane(lane).incarnation;
  }

  /**
   * Starts a new incarnation of a lane: a fresh sequence space, with the lane's outbox
   * renumbered from 1 in its order. Used when the hub reports that this incarnation's seqs were
   * already used for other writes (the database was restored from an old backup). Returns the
   * new incarnation.
   */
  reincarnate(lane = DEFAULT_LANE): { incarnation: string; renumbered: Array<{ from: number; to: number }> } {
    const renumbered = this.#db.transaction(() => this.#renumber(lane)).immediate();
    return { incarnation: this.incarnationOf(lane), renumbered };
  }

  /** Numbers the lane's outbox from 1 in its order under a new incarnation; returns each write's old and new seq, in order. */
  #renumber(lane: string): Array<{ from: number; to: number }> {
    const seqs = this.#db.prepare<[string], { seq: number }>('SELECT seq FROM outbox WHERE lane = ? ORDER BY seq').all(lane);
    const move = this.#db.prepare('UPDATE outbox SET seq = ? WHERE lane = ? AND seq = ?');
    seqs.forEach((row, i) => move.run(-(i + 1), lane, row.seq));
    this.#db.prepare('UPDATE outbox SET seq = -seq WHERE lane = ?').run(lane);
    const state = this.#lane(lane);
    state.incarnation = this.#born(lane);
    state.nextSeq = seqs.length + 1;
    this.#s.setMeta.run(laneMeta('next_seq', lane), String(state.nextSeq));
    return seqs.map((row, i) => ({ from: row.seq, to: i + 1 }));
  }

  /**
   * Adopts the hub's assignment of collections to partitions (`setting` = `value`, kept as a
   * setting) and, in the same transaction, moves every pending write of the default lane whose
   * collection `laneOf` now puts in another lane: a copy goes to the end of that lane, and the
   * write keeps its place in the default lane as a `skip` (reason `moved`), so that the default
   * lane's sequence stays contiguous and no write that stays there changes identity — even one
   * that was already uploaded. Returns the writes moved, for whoever holds their receipts or
   * waits on them.
   */
  adoptAssignment(setting: string, value: unknown, laneOf: (collection: string) => string): MovedWrite[] {
    const moved: MovedWrite[] = [];
    this.#db
      .transaction(() => {
        this.setSetting(setting, value);
        const rows = this.#db
          .prepare<[string], PendingRow & { created_at: number; rep: number | null }>(
            `SELECT lane, seq, collection, key, op, value, hlc, base, created_at, rep FROM outbox
         WHERE lane = ? AND skipped IS NULL AND acked_lsn IS NULL ORDER BY seq`,
          )
          .all(DEFAULT_LANE);
        for (const row of rows) {
          const lane = laneOf(row.collection);
          if (lane === DEFAULT_LANE) continue;
          const state = this.#lane(lane);
          this.#s.insertOutbox.run(
            lane,
            state.nextSeq,
            row.collection,
            row.key,
            row.op,
            row.value,
            row.hlc,
            row.base,
            row.created_at,
            row.rep,
          );
          this.#s.skip.run('moved', DEFAULT_LANE, row.seq);
          moved.push({
            from: { incarnation: this.incarnationOf(DEFAULT_LANE), seq: row.seq },
            to: { partition: lane, incarnation: state.incarnation, seq: state.nextSeq },
          });
          state.nextSeq += 1;
          this.#s.setMeta.run(laneMeta('next_seq', lane), String(state.nextSeq));
        }
      })
      .immediate();
    return moved;
  }

  /** A new lane (or database) is a new incarnation: a fresh sequence space the hub cannot confuse with an old one. */
  #born(lane: string): string {
    const incarnation = randomBytes(16).toString('hex');
    this.#s.setMeta.run(laneMeta('incarnation', lane), incarnation);
    return incarnation;
  }

  #meta(name: string): string | undefined {
    return this.#s.meta.get(name)?.value;
  }

  /** Bytes the database uses (pages in use, free pages not counted). */
  databaseBytes(): number {
    const pages =
      (this.#db.pragma('page_count', { simple: true }) as number) - (this.#db.pragma('freelist_count', { simple: true }) as number);
    return pages * (this.#db.pragma('page_size', { simple: true }) as number);
  }

  /**
   * The device's storage budget for app writes: a write that would take the database past
   * `bytes` fails with StorageFullError and stores nothing; what is queued stays. Replication
   * is not held to it — applying the hub's changes is what lets outbox rows go.
   */
  setStorageLimit(bytes: number | undefined): void {
    this.#storageLimit = bytes;
  }

  /** A small JSON value kept across restarts (e.g. the hub's collection policies). */
  getSetting<T>(name: string): T | undefined {
    const text = this.#meta(`setting:${name}`);
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  setSetting(name: string, value: unknown): void {
    this.#s.setMeta.run(`setting:${name}`, JSON.stringify(value));
  }

  /** The last HLC persisted, so the clock never runs backwards across restarts. */
  get lastHlc(): Hlc {
    return (this.#meta('hlc') ?? ZERO_HLC) as Hlc;
  }

  /**
   * Appends writes to the outbox in one transaction (group commit) and returns their seqs.
   * Throws StorageFullError when the disk or page budget is exhausted; nothing is half-written.
   */
  appendWrites(writes: readonly NewWrite[], clockNow: Hlc): number[] {
    return this.appendBuffered(writes, clockNow).seqs as number[];
  }

  /**
   * `appendWrites` under the collections' buffering policies: a write over its collection's
   * `maxPending` is refused (OutboxFullError in its place) or makes the oldest pending write of
   * that collection give way (`drop-oldest`, reported in `dropped`).
   */
  appendBuffered(writes: readonly NewWrite[], clockNow: Hlc, policyFor?: (collection: string) => Buffering): AppendResult {
    if (this.#storageLimit !== undefined) {
      const incoming = writes.reduce((sum, w) => sum + 64 + w.key.length + (w.value === undefined ? 0 : encodeCbor(w.value).length), 0);
      if (this.databaseBytes() + incoming > this.#storageLimit) throw new StorageFullError(this.path);
    }
    const result: AppendResult = { seqs: [], dropped: [] };
    const next = new Map<string, number>();
    try {
      this.#db
        .transaction(() => {
          const now = Date.now();
          for (const w of writes) {
            const lane = w.lane ?? DEFAULT_LANE;
            const seq = next.get(lane) ?? this.#lane(lane).nextSeq;
            const policy = policyFor?.(w.collection);
            if (policy && policy.maxPending > 0 && this.#s.pendingInCollection.get(w.collection)!.n >= policy.maxPending) {
              if (policy.overflow === 'reject') {
                result.seqs.push(new OutboxFullError(w.collection, policy.maxPending));
                continue;
              }
              const oldest = this.#s.oldestInCollection.get(w.collection);
              if (oldest) result.dropped.push(this.#giveUp(oldest, 'dropped', now));
            }
            const base = w.base ?? this.#s.document.get(w.collection, w.key)?.version ?? 0;
            const value = w.value === undefined ? null : encodeCbor(w.value);
            this.#s.insertOutbox.run(lane, seq, w.collection, w.key, w.op, value, w.hlc, base, now, w.rep ?? null);
            result.seqs.push(seq);
            next.set(lane, seq + 1);
          }
          for (const [lane, seq] of next) this.#s.setMeta.run(laneMeta('next_seq', lane), String(seq));
          this.#s.setMeta.run('hlc', clockNow);
        })
        .immediate();
    } catch (cause) {
      const code = (cause as { code?: string }).code;
      if (code === 'SQLITE_FULL') throw new StorageFullError(this.path, { cause });
      throw new StorageFailedError(this.path, 'write to', { cause });
    }
    for (const [lane, seq] of next) this.#lane(lane).nextSeq = seq;
    return result;
  }

  /**
   * Gives up pending writes older than their collection's TTL: each keeps its seq (sent as a
   * `skip`, so the sequence stays contiguous) and is recorded where the app sees it.
   */
  expire(ttlSecondsFor: (collection: string) => number, now = Date.now()): Rejection[] {
    const expired: Rejection[] = [];
    // Runs every second: take the write lock only when some pending collection has a TTL.
    const withTtl = this.#s.pendingCollections
      .all()
      .map(({ collection }) => ({ collection, ttl: ttlSecondsFor(collection) }))
      .filter(({ ttl }) => ttl > 0);
    if (withTtl.length === 0) return expired;
    this.#db
      .transaction(() => {
        for (const { collection, ttl } of withTtl) {
          for (const row of this.#s.olderThan.all(collection, now - ttl * 1000)) expired.push(this.#giveUp(row, 'expired', now));
        }
      })
      .immediate();
    return expired;
  }

  #giveUp(row: PendingRow, outcome: 'expired' | 'dropped', now: number): Rejection {
    const rejection: Rejection = {
      seq: row.seq,
      collection: row.collection,
      key: row.key,
      op: row.op,
      value: row.value === null ? undefined : (decodeCbor(row.value) as JsonValue),
      outcome,
      reason: outcome,
      detail: outcome === 'expired' ? "not uploaded within the collection's TTL" : 'dropped to make room (overflow policy drop-oldest)',
      at: now,
    };
    this.#s.insertRejection.run(
      this.incarnationOf(row.lane),
      row.seq,
      row.collection,
      row.key,
      row.op,
      row.value,
      outcome,
      outcome,
      rejection.detail,
      now,
    );
    this.#s.skip.run(outcome, row.lane, row.seq);
    return rejection;
  }

  /** Pending writes per collection: how many, and since when (ms epoch). */
  pendingByCollection(): Record<string, { pending: number; oldestAt: number }> {
    return Object.fromEntries(this.#s.pendingByCollection.all().map((r) => [r.collection, { pending: r.n, oldestAt: r.oldest }]));
  }

  /** The document with the device's own pending writes laid over it, or only the confirmed one. */
  read(collection: string, key: string, confirmedOnly = false): AgentDocument | undefined {
    const row = this.#s.document.get(collection, key);
    const version = row?.version ?? 0;
    let value: JsonValue | undefined = row && !row.deleted && row.value ? (decodeCbor(row.value) as JsonValue) : undefined;
    let pending = false;
    if (!confirmedOnly) {
      for (const p of this.#s.pendingForDoc.all(collection, key, version)) {
        pending = true;
        const v = p.value === null ? undefined : (decodeCbor(p.value) as JsonValue);
        value = p.op === 'del' ? undefined : p.op === 'put' ? v : applyPatch(value, v as { [f: string]: JsonValue });
      }
    }
    return value === undefined ? undefined : { collection, key, value, version, pending };
  }

  /** Documents of a collection in key order: keys starting with `prefix`, after `after`. */
  list(collection: string, options: { prefix?: string; after?: string; limit: number; confirmedOnly?: boolean }): AgentDocument[] {
    const { prefix = '', after, limit } = options;
    const from = after !== undefined && after > prefix ? after : prefix;
    const inRange = (key: string): boolean => key.startsWith(prefix) && (after === undefined || key > after);
    const pendingKeys = options.confirmedOnly ? [] : this.#s.pendingKeys.all(collection, from).map((r) => r.key);
    // Pending deletes can hide at most that many confirmed documents: fetch enough to fill the page.
    const confirmed = this.#s.confirmedKeys.all(collection, from, limit + pendingKeys.length + 1).map((r) => r.key);
    const keys = [...new Set([...confirmed, ...pendingKeys])].filter(inRange).sort();
    const docs: AgentDocument[] = [];
    for (const key of keys) {
      if (docs.length >= limit) break;
      const doc = this.read(collection, key, options.confirmedOnly);
      if (doc) docs.push(doc);
    }
    return docs;
  }

  /** A lane's unacknowledged ops from `fromSeq` on, in seq order: up to `maxOps`, and about `maxBytes` (at least one). */
  pendingFrom(lane: string, fromSeq: number, maxOps: number, maxBytes: number): WriteOp[] {
    const ops: WriteOp[] = [];
    let bytes = 0;
    for (const row of this.#s.pendingFrom.all(lane, fromSeq, maxOps)) {
      bytes += 48 + row.key.length + (row.value?.length ?? 0);
      if (ops.length > 0 && bytes > maxBytes) break;
      if (row.skipped) {
        ops.push({ seq: row.seq, c: row.collection, k: row.key, op: 'skip', v: row.skipped, hlc: row.hlc });
        continue;
      }
      ops.push({
        seq: row.seq,
        c: row.collection,
        k: row.key,
        op: row.op,
        hlc: row.hlc,
        ...(row.value !== null && { v: decodeCbor(row.value) }),
        ...(row.base > 0 && { base: row.base }),
        ...(row.rep != null && { rep: row.rep }),
      });
    }
    return ops;
  }

  lowestPendingSeq(lane = DEFAULT_LANE): number | undefined {
    return this.#s.lowestPending.get(lane)?.seq ?? undefined;
  }

  pendingCount(): number {
    return this.#s.pendingCount.get()!.n;
  }

  /**
   * Records the hub's outcomes. A committed op stays in the overlay until the replica holds
   * its version (so reads never go backwards); if its collection is not replicated here it
   * leaves at once. Rejected and conflicting ops leave the outbox and are kept as rejections.
   */
  applyResults(lane: string, results: readonly OpResult[], replicated: (collection: string) => boolean): Rejection[] {
    const rejected: Rejection[] = [];
    this.#db
      .transaction(() => {
        for (const r of results) {
          const row = this.#s.outboxRow.get(lane, r.seq);
          if (!row) continue;
          if (row.skipped) {
            this.#s.deleteOutbox.run(lane, r.seq); // already reported when it was given up
            continue;
          }
          if (r.outcome === 'committed' && r.lsn !== undefined) {
            const held = this.#s.document.get(row.collection, row.key)?.version ?? 0;
            if (replicated(row.collection) && held < r.lsn) this.#s.markAcked.run(r.lsn, lane, r.seq);
            else this.#s.deleteOutbox.run(lane, r.seq);
            continue;
          }
          const rejection: Rejection = {
            seq: r.seq,
            collection: row.collection,
            key: row.key,
            op: row.op,
            value: row.value === null ? undefined : (decodeCbor(row.value) as JsonValue),
            outcome: r.outcome === 'committed' ? 'duplicate' : r.outcome,
            reason: r.reason ?? null,
            detail: r.detail ?? null,
            at: Date.now(),
          };
          this.#s.insertRejection.run(
            this.incarnationOf(lane),
            r.seq,
            row.collection,
            row.key,
            row.op,
            row.value,
            rejection.outcome,
            rejection.reason,
            rejection.detail,
            rejection.at,
          );
          this.#s.deleteOutbox.run(lane, r.seq);
          rejected.push(rejection);
        }
      })
      .immediate();
    return rejected;
  }

  /**
   * Applies committed changes idempotently: a change lands only if its LSN is above the
   * document's version, so replays and overlapping pages are harmless. `watermark`, when given,
   * records that every change up to it has now been seen (the end of a pull page).
   */
  applyChanges(changes: readonly Change[], watermark?: number, lane = DEFAULT_LANE): Change[] {
    const applied: Change[] = [];
    this.#db
      .transaction(() => {
        const release = this.#s.anyConfirmed.get() !== undefined;
        const newest = new Map<string, number>();
        for (const ch of changes) {
          if (this.#applyOne(ch, release)) applied.push(ch);
          if (ch.lsn > (newest.get(ch.c) ?? 0)) newest.set(ch.c, ch.lsn);
        }
        // One cursor update per collection, not per change: the transaction is all or nothing.
        for (const [collection, lsn] of newest) this.#s.advanceCursor.run(collection, lsn);
        if (watermark !== undefined && watermark > this.watermarkOf(lane))
          this.#s.setMeta.run(laneMeta('watermark', lane), String(watermark));
      })
      .immediate();
    return applied;
  }

  /**
   * Applies one snapshot page in one transaction, with the progress that lets an interrupted
   * snapshot resume: `next` is the last document received, absent when the snapshot is done —
   * then the replica holds everything up to `lsn`, which becomes the watermark.
   */
  applySnapshotPage(
    docs: readonly Change[],
    lsn: number,
    next: readonly [string, string] | undefined,
    replicated?: readonly string[],
    lane = DEFAULT_LANE,
    inLane: (collection: string) => boolean = () => true,
  ): Change[] {
    const applied: Change[] = [];
    this.#db
      .transaction(() => {
        const release = this.#s.anyConfirmed.get() !== undefined;
        for (const doc of docs) if (this.#applyOne(doc, release)) applied.push(doc);
        if (next) {
          this.#s.setMeta.run(laneMeta('snapshot', lane), JSON.stringify({ lsn, after: next }));
        } else {
          this.#s.deleteMeta.run(laneMeta('snapshot', lane));
          if (lsn > this.watermarkOf(lane)) this.#s.setMeta.run(laneMeta('watermark', lane), String(lsn));
          // Complete: every replicated collection of the lane now holds everything up to the
          // snapshot's LSN. The hub reads these cursors for lag and replica acknowledgements.
          const collections = new Set([...(replicated ?? []), ...this.#s.documentCollections.all().map((r) => r.collection)]);
          for (const collection of collections) if (inLane(collection)) this.#s.advanceCursor.run(collection, lsn);
        }
      })
      .immediate();
    return applied;
  }

  /**
   * Writes one committed version if it is newer than the replica's; true if it was. `release`:
   * some outbox rows are confirmed and wait for their version to arrive (usually none are).
   */
  #applyOne(ch: Change, release: boolean): boolean {
    // Release the confirmed outbox rows first: on a full database their pages make room for the document.
    if (release) this.#s.releaseConfirmed.run(ch.c, ch.k, ch.lsn);
    const value = ch.v === undefined ? null : encodeCbor(ch.v);
    return this.#s.upsertDocument.run(ch.c, ch.k, value, ch.op === 'del' ? 1 : 0, ch.lsn, ch.hlc, ch.o).changes > 0;
  }

  /** Where an unfinished snapshot of a lane stopped, if one is under way. */
  snapshotProgressOf(lane: string): { lsn: number; after: [string, string] } | undefined {
    const text = this.#meta(laneMeta('snapshot', lane));
    return text === undefined ? undefined : (JSON.parse(text) as { lsn: number; after: [string, string] });
  }

  /** Every change of the default lane's replicated collections up to this LSN has been applied. */
  get watermark(): number {
    return this.watermarkOf(DEFAULT_LANE);
  }

  /** Every change of the lane's replicated collections up to this LSN (of its partition's log) has been applied. */
  watermarkOf(lane: string): number {
    return Number(this.#meta(laneMeta('watermark', lane)) ?? '0');
  }

  /** Highest LSN applied for a collection (0 if none). */
  cursor(collection: string): number {
    return this.#s.cursor.get(collection)?.applied_lsn ?? 0;
  }

  cursors(): Record<string, number> {
    return Object.fromEntries(this.#s.cursors.all().map((r) => [r.collection, r.applied_lsn]));
  }

  rejections(limit = 100): Rejection[] {
    return this.#s.rejections.all(limit).map((r) => ({ ...r, value: r.value === null ? undefined : (decodeCbor(r.value) as JsonValue) }));
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
