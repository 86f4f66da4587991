import { decodeHlc, type Hlc } from '../shared/hlc.js';
import type { WriteOp } from '../shared/messages.js';
import { encodeCbor } from '../shared/codec.js';
import type { Limits } from '../shared/limits.js';
import { checkCollectionName, checkKey, checkValue, isPlainObject } from '../shared/values.js';

/** Why an op is refused before anything is read: a reason code and a sentence for the app. */
export interface OpProblem {
  reason: string;
  detail: string;
}

/** A problem with an op's names or value, or the value encoded (its size is one of the checks). */
export function validateOp(op: Omit<WriteOp, 'seq'>, limits: Limits, maxFutureSkewMs: number): OpProblem | { encoded?: Buffer } {
  const nameProblem = checkCollectionName(op.c) ?? checkKey(op.k, limits.maxKeyBytes);
  if (nameProblem) return nameProblem;
  if (op.op !== 'del') {
    if (op.v === undefined) return { reason: 'invalid_value', detail: `${op.op} needs a value` };
    if (op.op === 'patch' && !isPlainObject(op.v)) return { reason: 'invalid_value', detail: 'patch needs an object of fields' };
    const valueProblem = checkValue(op.v, limits.maxValueDepth);
    if (valueProblem) return valueProblem;
    const encoded = encodeCbor(op.v);
    if (encoded.length > limits.maxValueBytes) {
      return { reason: 'too_large', detail: `value of ${encoded.length} bytes exceeds the limit of ${limits.maxValueBytes} bytes` };
    }
    return checkSkew(op, maxFutureSkewMs) ?? { encoded };
  }
  return checkSkew(op, maxFutureSkewMs) ?? {};
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
 *   so whether another device's document exists cannot be probed);
 * - or the write would leave it outside (a put or patch that moves it out);
 * - or the write would put it in buckets the device does not hold and it was not in already
 *   (a document of its own listing other sites, or every agent as owner): a device cannot push
 *   documents into other devices' scopes.
 * Hub writes are not asked. `after` is the document's value after the write (undefined: the
 * first check only).
 */
export function checkScope(
  view: ScopeView | undefined,
  agentId: string,
  op: { c: string; k: string; op: string },
  current: { value: unknown; deleted: boolean } | undefined,
  after?: unknown,
): OpProblem | undefined {
  if (!view?.scoped(op.c)) return undefined;
  const held = view.deviceBuckets(agentId, op.c);
  const before = view.documentBuckets(op.c, op.k, current && !current.deleted ? current.value : undefined);
  const mine = (buckets: readonly string[]): boolean => buckets.some((b) => held.has(b));
  let outside = false;
  if (after === undefined) {
    // Before anything is resolved: the document as it is, or (absent, deleted) its key.
    outside = (current !== undefined && !current.deleted) || op.op === 'del' ? !mine(before) : false;
  } else if (op.op !== 'del') {
    const buckets = view.documentBuckets(op.c, op.k, after);
    const previously = new Set(before);
    outside = !mine(buckets) || buckets.some((b) => !held.has(b) && !previously.has(b));
  }
  if (!outside) return undefined;
  return {
    reason: 'out_of_scope',
    detail: `document ${op.k} of ${op.c} is outside agent ${agentId}'s scope, or the write would take it out or into other devices' scopes; only the hub may write it`,
  };
}
