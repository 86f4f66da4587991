import { createHash, randomBytes, scrypt } from 'node:crypto';
import { promisify } from 'node:util';
import { constantTimeEqual } from '../shared/bearer.js';

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

/** scrypt cost: ~50 ms on a server core; a token is checked once per connection, then cached. */
const N = 16384;
const R = 8;
const P = 1;
const KEY_LENGTH = 32;

/** A new device token: 32 random bytes, shown once to whoever provisions the device. */
export function newToken(): string {
  return `opt_${randomBytes(32).toString('base64url')}`;
}

/** `scrypt$N$r$p$salt$hash`: what the hub stores instead of the token. */
export async function hashToken(token: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(token, salt, KEY_LENGTH, { N, r: R, p: P, maxmem: 64 * 1024 * 1024 });
  return ['scrypt', N, R, P, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

export async function verifyToken(token: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await scryptAsync(token, Buffer.from(salt, 'base64url'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    maxmem: 64 * 1024 * 1024,
  });
  return constantTimeEqual(actual, expected);
}

/** A fast fingerprint of a verified token, to recognise it on reconnects without scrypt. */
export function fingerprint(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}
