import { pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { constantTimeEqual } from '../shared/bearer.js';

const pbkdf2Async = promisify(pbkdf2);

/**
 * Mosquitto 2's password-file hash, as `mosquitto_passwd` writes it:
 * `$7$<iterations>$<base64 salt>$<base64 hash>`, PBKDF2-HMAC-SHA512 with 101 iterations, a
 * 12-byte salt and a 64-byte hash, standard base64 with padding. Mosquitto cannot check the
 * hub's scrypt hashes, so the hub stores this one beside it when an agent is provisioned.
 * (101 iterations is Mosquitto's own default; the tokens are 32 random bytes, so the hash's cost
 * is not what protects them.)
 */
const ITERATIONS = 101;
const SALT_BYTES = 12;
const HASH_BYTES = 64;

export async function mosquittoHash(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await pbkdf2Async(password, salt, ITERATIONS, HASH_BYTES, 'sha512');
  return `$7$${ITERATIONS}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Whether `password` matches a `$7$` hash (ours or mosquitto_passwd's). */
export async function verifyMosquittoHash(password: string, stored: string): Promise<boolean> {
  const [, scheme, iterations, salt, hash] = stored.split('$');
  if (scheme !== '7' || !iterations || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = await pbkdf2Async(password, Buffer.from(salt, 'base64'), Number(iterations), expected.length, 'sha512');
  return constantTimeEqual(actual, expected);
}
