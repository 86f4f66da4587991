import { encodeCbor } from '../shared/codec.js';
import { InvalidCollectionError, InvalidKeyError, InvalidValueError, ValueTooLargeError } from '../shared/errors.js';
import { limits } from '../shared/limits.js';
import { checkCollectionName, checkKey, checkValue, type JsonValue } from '../shared/values.js';

/** The hub's own checks, made before a write is stored, so that the app hears of a bad write at once. */
export function validateWrite(collection: string, key: string, value: JsonValue | undefined): void {
  if (checkCollectionName(collection)) throw new InvalidCollectionError(collection);
  if (checkKey(key, limits.maxKeyBytes)) throw new InvalidKeyError(key, limits.maxKeyBytes);
  if (value === undefined) return;
  const problem = checkValue(value, limits.maxValueDepth);
  if (problem) throw new InvalidValueError(problem.detail);
  const size = encodeCbor(value).length;
  if (size > limits.maxValueBytes) throw new ValueTooLargeError(size, limits.maxValueBytes);
}
