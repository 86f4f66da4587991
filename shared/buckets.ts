import { createHash } from 'node:crypto';

/**
 * The id a scope bucket travels and is stored under: 96 bits of a SHA-256 of its name
 * (hub/scope-rules.ts names them). Short on the wire, the same in every process, and it shows no
 * label value in a message or a log line.
 */
export function bucketIdOf(name: string): string {
  return createHash('sha256').update(name).digest('base64url').slice(0, 16);
}
