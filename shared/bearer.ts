import { timingSafeEqual } from 'node:crypto';

/**
 * Whether two secrets are equal, compared in constant time: how long it takes says nothing of
 * where they differ (only whether their lengths do). Strings are compared as their UTF-8 bytes.
 */
export function constantTimeEqual(a: string | Buffer, b: string | Buffer): boolean {
  const x = typeof a === 'string' ? Buffer.from(a) : a;
  const y = typeof b === 'string' ? Buffer.from(b) : b;
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Whether an `Authorization` header carries `Bearer <token>`, compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  return constantTimeEqual(header?.startsWith('Bearer ') ? header.slice(7) : '', token);
}
