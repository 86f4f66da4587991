import type { JsonValue } from '../../shared/values.js';
import type { AgentDb } from './agent-db.js';
import { decodeValue, type StoredWrite, type WriteKind } from './writes.js';

/** A write of this device that will never be committed, and why: kept where the app can read it. */
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

/** Why a write was rejected, as `Rejections.record` takes it. */
export type Verdict = Pick<Rejection, 'outcome' | 'reason' | 'detail' | 'at'>;

/** The rejections table: writes refused by the hub or given up on this device, newest first. */
export class Rejections {
  readonly #s;

  constructor(db: AgentDb) {
    this.#s = {
      insert: db.prepare<[string, number, string, string, WriteKind, Buffer | null, string, string | null, string | null, number]>(
        `INSERT INTO rejections (incarnation, seq, collection, key, op, value, outcome, reason, detail, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      list: db.prepare<[number], Omit<Rejection, 'value'> & { value: Buffer | null }>(
        'SELECT seq, collection, key, op, value, outcome, reason, detail, at FROM rejections ORDER BY id DESC LIMIT ?',
      ),
    };
  }

  /** Records a write of sequence space `incarnation` as rejected; returns the rejection as the app hears of it. */
  record(incarnation: string, write: StoredWrite, verdict: Verdict): Rejection {
    const { seq, collection, key, op, value } = write;
    const { outcome, reason, detail, at } = verdict;
    this.#s.insert.run(incarnation, seq, collection, key, op, value, outcome, reason, detail, at);
    return { seq, collection, key, op, value: decodeValue(value), outcome, reason, detail, at };
  }

  /** The latest rejections, newest first. */
  list(limit = 100): Rejection[] {
    return this.#s.list.all(limit).map((r) => ({ ...r, value: decodeValue(r.value) }));
  }
}
