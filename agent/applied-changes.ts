import type { Change } from '../shared/messages.js';
import { decodeValue } from '../shared/value-bytes.js';
import type { JsonValue } from '../shared/values.js';
import type { AppliedChange } from './types.js';

/**
 * Committed changes as the app hears them (the `change` and `repaired` events): each value is
 * decoded from the bytes the replica stored when the app first reads it, so a listener that
 * looks only at keys, or counts, decodes nothing. `v` stays an enumerable property:
 * `JSON.stringify` and spreading see it as before.
 */
export function appliedChanges(changes: readonly Change[]): AppliedChange[] {
  return changes.map(decodedOnRead);
}

function decodedOnRead(change: Change): AppliedChange {
  const { v: bytes, ...rest } = change;
  if (bytes === undefined) return rest;
  let value: JsonValue | undefined;
  return Object.defineProperty(rest, 'v', {
    enumerable: true,
    get: (): JsonValue => (value ??= decodeValue(bytes)),
  });
}
