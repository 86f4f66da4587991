import { InvalidHeaderError } from './errors.js';

/**
 * `If-Match: 7` or `If-Match: "7"` → 7; absent → undefined. Anything else is refused: a write
 * whose condition cannot be read must not commit unconditionally.
 */
export function parseIfMatch(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*"?(\d{1,15})"?\s*$/.exec(Array.isArray(header) ? header.join(',') : header);
  if (!match) throw new InvalidHeaderError('If-Match', 'expected a document version (a non-negative integer, optionally quoted)');
  return Number(match[1]);
}
