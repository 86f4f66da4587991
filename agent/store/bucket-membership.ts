import type { HeldBucket } from './scope-buckets.js';

/**
 * Which of a scoped document's buckets a device may trust, from what it holds of each.
 *
 * A document's stored buckets (`bk`) say through which buckets the device holds it; a bucket
 * held counts only while it is sure to tell the device when the document leaves it. One followed
 * through its log is, from its cursor on. One being joined or caught up by a snapshot is not
 * until that snapshot names the document (whole or as a tag): the snapshot is of the bucket
 * now, and the log after it never says what left before. So the bucket is taken out of every
 * stored `bk` when its snapshot starts, and no other bucket's change may put it back.
 */

/** Followed through its log: not being joined, nor caught up by a snapshot. */
export function followed(state: HeldBucket | undefined): boolean {
  return state !== undefined && state.cursor >= 0 && state.snapshot === undefined;
}

/**
 * Whether a held bucket will bring a change at `lsn` of a document it has: it is followed and
 * its log has not gone past `lsn`. (One past `lsn` that did not bring the change to the device,
 * whose version is older, caught up by a snapshot taken after the document left it.)
 */
export function willBring(held: ReadonlyMap<string, HeldBucket>, bucket: string, lsn: number): boolean {
  const state = held.get(bucket);
  return followed(state) && state!.cursor < lsn;
}

/**
 * The buckets to store with a change at `lsn` that came through bucket `via`: its `bk`, less
 * the held buckets other than `via` that will not bring the change themselves. Those say on
 * their own whether they have the document (their snapshot names it, or their log brings it).
 */
export function vouchedBuckets(bk: readonly string[], via: string, lsn: number, held: ReadonlyMap<string, HeldBucket>): string[] {
  return bk.filter((b) => b === via || !held.has(b) || willBring(held, b, lsn));
}

/**
 * What a document's stored buckets still say once it left `bucket` at `lsn`, the device holding
 * its version `version`: the held buckets that keep it (at that very version, each one followed;
 * at an older one, those that will bring the change), and the buckets not held.
 */
export function bucketsAfterLeaving(
  stored: readonly string[],
  bucket: string,
  version: number,
  lsn: number,
  held: ReadonlyMap<string, HeldBucket>,
): string[] {
  return stored.filter((b) => b !== bucket && (!held.has(b) || (version === lsn ? followed(held.get(b)) : willBring(held, b, lsn))));
}

/**
 * The buckets to store with a document that a range repair of bucket `via` wrote as the hub has
 * it at its LSN `lsn`: what a snapshot of `via` taken then would store (its `bk`, the hub's word
 * at `lsn`), with `via` itself whatever `bk` says (the hub sent it as one of the bucket's), except
 * for the held buckets whose word the answer cannot give: one not followed (its snapshot names the
 * document or not, and nothing else may put it back) and one whose log went past `lsn` (it may
 * have taken the document out since). For those, what the replica stored with this very version
 * (`stored`; none when it held another) stays.
 */
export function repairedBuckets(
  bk: readonly string[],
  via: string,
  lsn: number,
  held: ReadonlyMap<string, HeldBucket>,
  stored: readonly string[],
): string[] {
  const answered = (b: string): boolean => b === via || !held.has(b) || (followed(held.get(b)) && held.get(b)!.cursor <= lsn);
  const kept = [...bk.filter((b) => answered(b) || stored.includes(b)), ...stored.filter((b) => !answered(b) && !bk.includes(b))];
  return kept.includes(via) ? kept : [...kept, via];
}
