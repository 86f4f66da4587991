import type { Hlc } from '../shared/hlc.js';
import { applyPatch, isPlainObject, type JsonValue } from '../shared/values.js';
import type { ConflictPolicy } from './config.js';
import type { StoredDocument } from './store/hub-store.js';

export interface IncomingWrite {
  op: 'put' | 'patch' | 'del';
  value: JsonValue | undefined;
  hlc: Hlc;
  origin: string;
  /** Version the writer saw (0 = none). */
  base: number;
}

export type Resolution =
  | {
      kind: 'apply';
      /** New document value; undefined for a delete. */
      value: JsonValue | undefined;
      /** Per-field timestamps (merge policy only). */
      fieldHlcs?: Record<string, Hlc>;
      /** The current version was concurrent with this write and is overwritten: archive it. */
      overwritten?: boolean;
      /** Merge policy: fields of the patch that lost to newer fields. */
      lostFields?: { [field: string]: JsonValue };
    }
  | { kind: 'lose'; reason: 'lww' | 'stale_base' | 'merge'; detail: string };

/**
 * Decides what a write does to the current document under a collection's conflict policy.
 * A write is concurrent with the current version when it was made against an older version
 * and the current one came from someone else; only then is anything lost and archived.
 */
export function resolveWrite(policy: ConflictPolicy, current: StoredDocument | undefined, incoming: IncomingWrite): Resolution {
  const concurrent = current !== undefined && current.version > incoming.base && current.origin !== incoming.origin;
  switch (policy) {
    case 'reject':
      if (concurrent) {
        return {
          kind: 'lose',
          reason: 'stale_base',
          detail: `write was made against version ${incoming.base}, but version ${current.version} from ${current.origin} was committed first`,
        };
      }
      return { kind: 'apply', value: nextValue(current, incoming) };
    case 'merge':
      if (incoming.op === 'patch' && current && !current.deleted) return mergeFields(current, incoming);
      return lww(current, incoming, concurrent, true);
    case 'lww':
      return lww(current, incoming, concurrent, false);
  }
}

function lww(current: StoredDocument | undefined, incoming: IncomingWrite, concurrent: boolean, keepFieldHlcs: boolean): Resolution {
  if (current && !later(incoming.hlc, incoming.origin, current.hlc, current.origin)) {
    return {
      kind: 'lose',
      reason: 'lww',
      detail: `version ${current.version} from ${current.origin} has a later timestamp (${current.hlc})`,
    };
  }
  const value = nextValue(current, incoming);
  return {
    kind: 'apply',
    value,
    ...(keepFieldHlcs && { fieldHlcs: fieldsStamped(value, incoming.hlc) }),
    ...(concurrent && { overwritten: true }),
  };
}

/** Merge policy for a patch: each field is last-writer-wins on its own timestamp. */
function mergeFields(current: StoredDocument, incoming: IncomingWrite): Resolution {
  const patch = incoming.value as { [field: string]: JsonValue };
  const base = isPlainObject(current.value) ? current.value : {};
  const fieldHlcs: Record<string, Hlc> = { ...current.fieldHlcs };
  const won: { [field: string]: JsonValue } = {};
  const lost: { [field: string]: JsonValue } = {};
  for (const [field, v] of Object.entries(patch)) {
    const held = current.fieldHlcs?.[field] ?? current.hlc;
    if (later(incoming.hlc, incoming.origin, held, current.origin)) {
      won[field] = v;
      fieldHlcs[field] = incoming.hlc;
    } else {
      lost[field] = v;
    }
  }
  if (Object.keys(won).length === 0) {
    return { kind: 'lose', reason: 'merge', detail: `every field has a later write in version ${current.version}` };
  }
  const value = applyPatch(base, won);
  for (const field of Object.keys(fieldHlcs)) if (!(isPlainObject(value) && field in value)) delete fieldHlcs[field];
  return { kind: 'apply', value, fieldHlcs, ...(Object.keys(lost).length > 0 && { lostFields: lost }) };
}

function nextValue(current: StoredDocument | undefined, incoming: IncomingWrite): JsonValue | undefined {
  if (incoming.op === 'del') return undefined;
  if (incoming.op === 'put') return incoming.value;
  return applyPatch(current?.deleted ? undefined : current?.value, incoming.value as { [field: string]: JsonValue });
}

function fieldsStamped(value: JsonValue | undefined, hlc: Hlc): Record<string, Hlc> {
  return isPlainObject(value) ? Object.fromEntries(Object.keys(value).map((f) => [f, hlc])) : {};
}

/** Timestamp order, ties broken by origin id so that every replica picks the same winner. */
function later(hlc: string, origin: string, otherHlc: string, otherOrigin: string): boolean {
  return hlc !== otherHlc ? hlc > otherHlc : origin > otherOrigin;
}
