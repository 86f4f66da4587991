import { encodeValue } from '../shared/value-bytes.js';
import { InvalidCollectionError, InvalidKeyError, InvalidValueError, ValueTooLargeError } from '../shared/errors.js';
import { limits } from '../shared/limits.js';
import { checkCollectionName, checkKey, checkValue, type JsonValue } from '../shared/values.js';

/**
 * The hub's own checks, made before a write is stored, so that the app hears of a bad write at
 * once; returns the value's bytes, the one encoding the write is stored, uploaded and committed as.
 */
export function validateWrite(collection: string, key: string, value: JsonValue | undefined): Buffer | undefined {
  if (checkCollectionName(collection)) throw new InvalidCollectionError(collection);
  if (checkKey(key, limits.maxKeyBytes)) throw new InvalidKeyError(key, limits.maxKeyBytes);
  if (value === undefined) return undefined;
  const problem = checkValue(value, limits.maxValueDepth);
  if (problem) throw new InvalidValueError(problem.detail);
  const encoded = encodeValue(value);
  if (encoded.length > limits.maxValueBytes) throw new ValueTooLargeError(encoded.length, limits.maxValueBytes);
  return encoded;
}
