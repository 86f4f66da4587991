import Database from 'better-sqlite3';
import { join } from 'node:path';
import { documentHash, RangeTally } from '../../../shared/digest.js';
import type { Change } from '../../../shared/messages.js';
import { change } from './fixtures.js';
import { asBuffer } from '../../../shared/value-bytes.js';

/** Documents k0, k1, … of docs, from LSN `from` on. */
export const many = (from: number, n: number): Change[] =>
  Array.from({ length: n }, (_, i) => change(from + i, `k${i}`, { i, text: `value ${i}` }));

/**
 * The hub's side of a digest, worked out here from the changes alone: each document's newest
 * state (a delete as a tombstone), hashed over the CBOR of its value, summed exactly (BigInt)
 * and only then taken mod 2^52.
 */
export function newest(changes: readonly Change[], collection = 'docs'): Change[] {
  const byKey = new Map<string, Change>();
  for (const ch of changes) {
    if (ch.c !== collection) continue;
    const held = byKey.get(ch.k);
    if (!held || ch.lsn > held.lsn) byKey.set(ch.k, ch);
  }
  return [...byKey.values()];
}

export const hashOf = (ch: Change): number => documentHash(ch.c, ch.k, ch.lsn, ch.op === 'del', ch.op === 'del' ? null : asBuffer(ch.v!));

export function digestOf(docs: readonly Change[]): number {
  const sum = docs.reduce((s, ch) => s + BigInt(hashOf(ch)), 0n);
  return Number(sum % 2n ** 52n);
}

/** The same documents summed into ranges by the hub's tally, with `documentHash` of each. */
export function tallyOf(
  docs: readonly Change[],
  depth: number,
  parents: number[],
  bits: number,
): { digests: number[][]; counts: number[][] } {
  const tally = new RangeTally(depth, parents, bits);
  for (const ch of docs) tally.add(ch.k, hashOf(ch));
  return { digests: tally.digests, counts: tally.counts };
}

/** The agent's database file opened by hand, as an operator with the sqlite3 tool would; closed by `body`'s end. */
export function byHand<T>(dir: string, body: (db: Database.Database) => T): T {
  const db = new Database(join(dir, 'agent.db'));
  try {
    return body(db);
  } finally {
    db.close();
  }
}
