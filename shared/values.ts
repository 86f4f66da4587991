import type { RejectReason } from './errors.js';
import { limits as defaultLimits, COLLECTION_PATTERN } from './limits.js';

/** A document value: plain JSON data. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [field: string]: JsonValue };

export interface ValueProblem {
  reason: RejectReason;
  detail: string;
}

/**
 * Checks that a decoded value is plain JSON data of bounded depth. CBOR can carry Maps, Sets,
 * typed arrays, tagged dates and objects keyed `__proto__`; none of them may reach storage.
 * Recursive, and so allocation-free, as the hub runs it on every value written: the depth is
 * bounded by `maxDepth`, checked before going deeper.
 */
export function checkValue(value: unknown, maxDepth: number = defaultLimits.maxValueDepth): ValueProblem | undefined {
  return checkAt(value, 0, maxDepth);
}

function checkAt(v: unknown, depth: number, maxDepth: number): ValueProblem | undefined {
  if (depth > maxDepth) return { reason: 'invalid_value', detail: `nested deeper than ${maxDepth} levels` };
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return undefined;
  if (typeof v === 'number') return Number.isFinite(v) ? undefined : { reason: 'invalid_value', detail: 'numbers must be finite' };
  if (Array.isArray(v)) {
    for (const item of v) {
      const problem = checkAt(item, depth + 1, maxDepth);
      if (problem) return problem;
    }
    return undefined;
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    for (const field of Object.keys(v)) {
      // cbor-x renames a decoded `__proto__` key to `__proto_`; both are refused, so that
      // neither is stored under a name its writer did not give it.
      if (field === '__proto__' || field === '__proto_') return { reason: 'invalid_value', detail: `field name ${field} is not allowed` };
      const problem = checkAt((v as Record<string, unknown>)[field], depth + 1, maxDepth);
      if (problem) return problem;
    }
    return undefined;
  }
  return { reason: 'invalid_value', detail: `unsupported type ${describe(v)}` };
}

function describe(v: unknown): string {
  if (typeof v !== 'object' || v === null) return typeof v;
  return v.constructor?.name ?? 'object';
}

export function checkCollectionName(name: string): ValueProblem | undefined {
  return COLLECTION_PATTERN.test(name)
    ? undefined
    : { reason: 'invalid_collection', detail: `collection name ${JSON.stringify(name.slice(0, 80))} must be 1-64 of a-z 0-9 _ -` };
}

export function checkKey(key: string, maxKeyBytes: number = defaultLimits.maxKeyBytes): ValueProblem | undefined {
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes === 0 || bytes > maxKeyBytes)
    return { reason: 'invalid_key', detail: `key must be 1-${maxKeyBytes} UTF-8 bytes, got ${bytes}` };
  // PostgreSQL text cannot hold NUL: such a key would fail every group commit it joined.
  if (key.includes('\u0000')) return { reason: 'invalid_key', detail: 'key must not contain the NUL character (U+0000)' };
  return undefined;
}

/** Applies a shallow patch: fields set to null are removed, others replace. */
export function applyPatch(current: JsonValue | undefined, patch: { [field: string]: JsonValue }): JsonValue {
  const base = current !== null && typeof current === 'object' && !Array.isArray(current) ? current : {};
  const next: { [field: string]: JsonValue } = { ...base };
  for (const [field, value] of Object.entries(patch)) {
    if (value === null) delete next[field];
    else next[field] = value;
  }
  return next;
}

export function isPlainObject(v: unknown): v is { [field: string]: JsonValue } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}
