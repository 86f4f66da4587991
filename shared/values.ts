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
 */
export function checkValue(value: unknown, maxDepth: number = defaultLimits.maxValueDepth): ValueProblem | undefined {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (depth > maxDepth) return { reason: 'invalid_value', detail: `nested deeper than ${maxDepth} levels` };
    if (v === null || typeof v === 'boolean' || typeof v === 'string') continue;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return { reason: 'invalid_value', detail: 'numbers must be finite' };
      continue;
    }
    if (Array.isArray(v)) {
      for (const item of v) stack.push([item, depth + 1]);
      continue;
    }
    if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
      for (const [field, item] of Object.entries(v)) {
        // cbor-x renames a decoded `__proto__` key to `__proto_`; both are refused, so that
        // neither is stored under a name its writer did not give it.
        if (field === '__proto__' || field === '__proto_') return { reason: 'invalid_value', detail: `field name ${field} is not allowed` };
        stack.push([item, depth + 1]);
      }
      continue;
    }
    return { reason: 'invalid_value', detail: `unsupported type ${describe(v)}` };
  }
  return undefined;
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
