import { blobOf } from '../shared/blobs.js';
import { bucketIdOf } from '../shared/buckets.js';
import { decodeHlc, type Hlc } from '../shared/hlc.js';
import type { WriteOp } from '../shared/messages.js';
import { asBuffer, parseValue } from '../shared/value-bytes.js';
import type { Limits } from '../shared/limits.js';
import { checkCollectionName, checkKey, isPlainObject, type JsonValue } from '../shared/values.js';

/** Why an op is refused before anything is read: a reason code and a sentence for the app. */
export interface OpProblem {
  reason: string;
  detail: string;
}

/**
 * A problem with an op's names or value, or the value decoded (`value`) beside its bytes as the
 * writer encoded them (`encoded`), which are what the hub stores, digests and sends on.
 */
export function validateOp(
  op: Omit<WriteOp, 'seq'>,
  limits: Limits,
  maxFutureSkewMs: number,
): OpProblem | { value?: JsonValue; encoded?: Buffer } {
  const nameProblem = checkCollectionName(op.c) ?? checkKey(op.k, limits.maxKeyBytes);
  if (nameProblem) return nameProblem;
  if (op.op !== 'del') {
    if (op.v === undefined) return { reason: 'invalid_value', detail: `${op.op} needs a value` };
    const parsed = parseValue(op.v, limits.maxValueDepth, limits.maxValueBytes);
    if ('reason' in parsed) return parsed;
    if (op.op === 'patch' && !isPlainObject(parsed.value)) return { reason: 'invalid_value', detail: 'patch needs an object of fields' };
    return checkSkew(op, maxFutureSkewMs) ?? { value: parsed.value, encoded: asBuffer(op.v) };
  }
  return checkSkew(op, maxFutureSkewMs) ?? {};
}

/**
 * A write to a collection that holds blobs (its `blobs` policy) is refused unless it is a delete,
 * or a put of a blob's document (`{ sha256, size, contentType }`) whose content the hub holds
 * whole (`heldWhole`): no reader ever sees a blob without its content. A patch could change the
 * address without the content, so a blob's document is written whole.
 */
export function checkBlobDocument(
  op: Pick<WriteOp, 'c' | 'op'>,
  value: JsonValue | undefined,
  heldWhole: (hash: string, size: number) => boolean,
): OpProblem | undefined {
  if (op.op === 'del') return undefined;
  const holds = `collection ${op.c} holds blobs: its documents are { sha256, size, contentType }`;
  if (op.op === 'patch') return { reason: 'invalid_value', detail: `${holds}, written whole, never patched` };
  const blob = blobOf(value);
  if (!blob) return { reason: 'invalid_value', detail: `${holds}; upload content with PUT /v1/blobs/${op.c}/:key` };
  if (!heldWhole(blob.sha256, blob.size)) {
    return {
      reason: 'blob_incomplete',
      detail: `the hub does not hold content ${blob.sha256} (${blob.size} bytes) whole: upload the content before its document`,
    };
  }
  return undefined;
}

/** A write to a collection of another partition: refused (`wrong_partition`), never committed here. */
export function checkPartition(
  collection: string,
  partition: { name: string; of: (collection: string) => string } | undefined,
): OpProblem | undefined {
  if (!partition) return undefined;
  const owner = partition.of(collection);
  if (owner === partition.name) return undefined;
  return {
    reason: 'wrong_partition',
    detail:
      `collection ${collection} belongs to partition ${owner}, not ${partition.name}: send it on partition ${owner}'s topics ` +
      "(upgrade the agent, which routes writes by the hub status's assignment)",
  };
}

function checkSkew(op: Omit<WriteOp, 'seq'>, maxFutureSkewMs: number): OpProblem | undefined {
  const skew = decodeHlc(op.hlc as Hlc).wall - Date.now();
  if (skew > maxFutureSkewMs) {
    return { reason: 'clock_skew', detail: `timestamp is ${Math.round(skew / 1000)} s ahead of the hub; fix the device clock` };
  }
  return undefined;
}

/** What the write check needs of the scope rules (hub/scope-rules.ts, `ScopeCheck`). */
export interface ScopeView {
  scoped(collection: string): boolean;
  /** The buckets a document is in. */
  documentBuckets(collection: string, key: string, value: unknown): readonly string[];
  /** The buckets an agent holds of a collection, with its labels now. */
  deviceBuckets(agentId: string, collection: string): ReadonlySet<string>;
}

/**
 * A device's write to a scoped collection is refused (`out_of_scope`, never committed) when:
 * - the document as it is lies outside the device's scope (a tombstone or an absent document
 *   counts by its key alone: a delete the key rules do not place in its scope is refused too,
 *   so whether another device's document exists cannot be probed) — `scopeBefore`, asked
 *   before anything is resolved, so the device learns nothing of such a document;
 * - or the write would leave it outside (a put or patch that moves it out), or put it in buckets
 *   the device does not hold and it was not in already (a document of its own listing other
 *   sites, or every agent as owner): a device cannot push documents into other devices' scopes
 *   — `scopeAfter`, asked of the value the write resolved to.
 * Hub writes are not asked.
 */
export function scopeBefore(
  view: ScopeView | undefined,
  agentId: string,
  op: { c: string; k: string; op: string },
  current: { value: unknown; deleted: boolean } | undefined,
): OpProblem | undefined {
  if (!view?.scoped(op.c)) return undefined;
  const live = current !== undefined && !current.deleted;
  if (!live && op.op !== 'del') return undefined; // a new document: judged by its value, after
  const held = view.deviceBuckets(agentId, op.c);
  return bucketsOf(view, op, current).some((b) => held.has(b)) ? undefined : outOfScope(agentId, op);
}

/** See scopeBefore. `after` is the document's value once written (a delete is not asked). */
export function scopeAfter(
  view: ScopeView | undefined,
  agentId: string,
  op: { c: string; k: string; op: string },
  current: { value: unknown; deleted: boolean } | undefined,
  after: unknown,
): OpProblem | undefined {
  if (!view?.scoped(op.c) || op.op === 'del') return undefined;
  const held = view.deviceBuckets(agentId, op.c);
  const previously = new Set(bucketsOf(view, op, current));
  const buckets = view.documentBuckets(op.c, op.k, after);
  const outside = !buckets.some((b) => held.has(b)) || buckets.some((b) => !held.has(b) && !previously.has(b));
  return outside ? outOfScope(agentId, op) : undefined;
}

/**
 * The document a device's write to a scoped collection is weighed against: a deleted one the
 * device could not read (none of its buckets held, by its key or as stored, which are those
 * whose devices were sent the tombstone) counts as absent, as scopeBefore counts it. Weighed
 * as it is, it would lose the write a conflict whose answer tells a tombstone from an absent
 * key, and who deleted it. A live one outside the scope never gets here (scopeBefore).
 */
export function weighedDocument<T extends { value: unknown; deleted: boolean; buckets?: readonly string[] }>(
  view: ScopeView | undefined,
  agentId: string,
  op: { c: string; k: string },
  current: T | undefined,
): T | undefined {
  if (!view?.scoped(op.c) || !current?.deleted) return current;
  const held = view.deviceBuckets(agentId, op.c);
  if (bucketsOf(view, op, current).some((b) => held.has(b))) return current;
  const heldIds = new Set([...held].map(bucketIdOf));
  return current.buckets?.some((id) => heldIds.has(id)) ? current : undefined;
}

/**
 * A lost version committed again (hub/reapply.ts) is held to the scope now of the devices whose
 * reports vouch for it, as their live writes are: its writer's report only where the writer may
 * write it (scopeBefore and scopeAfter, against the document as it is), another device's only
 * where that device may read it (the version's buckets; a delete's, the document's as it is).
 */
export function scopeOfReapply(
  view: ScopeView | undefined,
  write: { c: string; k: string; op: string; v?: unknown; origin: string; vouchers: readonly string[] },
  current: { value: unknown; deleted: boolean; buckets?: readonly string[] } | undefined,
): OpProblem | undefined {
  if (!view?.scoped(write.c)) return undefined;
  const vouched = write.vouchers.some((agentId) =>
    agentId === write.origin
      ? !scopeBefore(view, agentId, write, current) && !scopeAfter(view, agentId, write, current, write.v)
      : mayReadVersion(view, agentId, write, current),
  );
  if (vouched) return undefined;
  return {
    reason: 'out_of_scope',
    detail: `this version of document ${write.k} of ${write.c} lies outside the scope of the devices that reported it, as they may write or read it now`,
  };
}

/** Whether a device may read a version: a put by its value; a delete where it may read the document as it is. */
function mayReadVersion(
  view: ScopeView,
  agentId: string,
  write: { c: string; k: string; op: string; v?: unknown },
  current: { value: unknown; deleted: boolean; buckets?: readonly string[] } | undefined,
): boolean {
  if (write.op !== 'del') return view.documentBuckets(write.c, write.k, write.v).some((b) => view.deviceBuckets(agentId, write.c).has(b));
  if (current?.deleted) return weighedDocument(view, agentId, write, current) !== undefined;
  return scopeBefore(view, agentId, write, current) === undefined;
}

/** The buckets a document is in as it is: a tombstone or an absent document by its key alone. */
function bucketsOf(
  view: ScopeView,
  op: { c: string; k: string },
  current: { value: unknown; deleted: boolean } | undefined,
): readonly string[] {
  return view.documentBuckets(op.c, op.k, current && !current.deleted ? current.value : undefined);
}

function outOfScope(agentId: string, op: { c: string; k: string }): OpProblem {
  return {
    reason: 'out_of_scope',
    detail: `document ${op.k} of ${op.c} is outside agent ${agentId}'s scope, or the write would take it out or into other devices' scopes; only the hub may write it`,
  };
}
