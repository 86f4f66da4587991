import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCode, NotFoundError, WriteRefusedError, WrongPartitionError } from '../../shared/errors.js';
import { HTTP_STATUS, httpError } from '../../shared/http-errors.js';

/** The README's table of error codes: code → the HTTP column as written. */
function readmeCodes(): Map<string, string> {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.split('\n## Errors\n')[1]!.split('\n## ')[0]!;
  const rows = [...section.matchAll(/^\| `(OUTPOST_[A-Z_]+)` \| ([^|]+) \|/gm)];
  return new Map(rows.map((m) => [m[1]!, m[2]!.trim()]));
}

describe('the error vocabulary', () => {
  it('is listed whole in the README, each code with the HTTP status it answers with', () => {
    const listed = readmeCodes();
    expect([...listed.keys()].sort()).toEqual(Object.values(ErrorCode).sort());
    for (const code of Object.values(ErrorCode)) {
      const status = HTTP_STATUS[code];
      const column = listed.get(code)!;
      if (code === ErrorCode.INVALID_REQUEST) expect(column).toBe('4xx');
      else expect(column, code).toBe(status === undefined ? '—' : String(status));
    }
  });

  it('answers an Outpost error with its own status and facts', () => {
    expect(httpError(new NotFoundError('no document a/b at the hub'))).toEqual({
      status: 404,
      body: { code: 'OUTPOST_NOT_FOUND', message: 'no document a/b at the hub' },
    });
    const wrong = httpError(new WrongPartitionError('orders', 'billing', ['default']));
    expect(wrong).toMatchObject({ status: 409, body: { code: 'OUTPOST_WRONG_PARTITION', collection: 'orders', partition: 'billing' } });
    expect(httpError(new WriteRefusedError(3, 'conflict', 'stale_base', 'x'))).toMatchObject({
      status: 409,
      body: { code: 'OUTPOST_WRITE_CONFLICT', seq: 3, reason: 'stale_base' },
    });
  });

  it('answers a request the framework refused as an invalid request with its status, and anything else as internal', () => {
    const badJson = Object.assign(new Error('Body is not valid JSON'), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' });
    expect(httpError(badJson)).toEqual({
      status: 400,
      body: { code: 'OUTPOST_INVALID_REQUEST', message: 'the request is invalid: Body is not valid JSON' },
    });
    const mediaType = Object.assign(new Error('Unsupported Media Type'), { statusCode: 415 });
    expect(httpError(mediaType).status).toBe(415);
    expect(httpError(new TypeError('x is undefined'))).toEqual({
      status: 500,
      body: { code: 'OUTPOST_INTERNAL', message: 'x is undefined' },
    });
    expect(httpError(Object.assign(new Error('boom'), { statusCode: 503 })).body.code).toBe('OUTPOST_INTERNAL');
  });
});
