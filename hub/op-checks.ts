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

/**
 * Whether a document (its key and value) is in an agent's scope; undefined when the collection
 * has no scope (hub/scope-rules.ts).
 */
export type InScope = (agentId: string, collection: string, key: string, value: unknown) => boolean | undefined;

/**
 * A device's write to a scoped collection: refused (`out_of_scope`) when the document as it is
 * lies outside the device's scope, or as the write would leave it does (a put or patch that
 * moves it out). Hub writes are not asked. The same answer whether the document exists or not,
 * as far as the write's own value allows.
 */
export function checkScope(
  inScope: InScope | undefined,
  agentId: string,
  op: { c: string; k: string; op: string },
  current: { value: unknown; deleted: boolean } | undefined,
  after: unknown,
): OpProblem | undefined {
  if (!inScope) return undefined;
  const outside = (value: unknown): boolean => inScope(agentId, op.c, op.k, value) === false;
  if ((current && !current.deleted && outside(current.value)) || (op.op !== 'del' && after !== undefined && outside(after))) {
    return {
      reason: 'out_of_scope',
      detail: `document ${op.k} of ${op.c} is outside agent ${agentId}'s scope, or the write would move it out; only the hub may write it`,
    };
  }
  return undefined;
}
