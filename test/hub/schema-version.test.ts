import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HUB_MIGRATIONS } from '../../hub/store/sqlite-schema.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { tempDir } from '../helpers/temp.js';

/** A hub store written by a newer Outpost is refused with its own code, and left as it was (PostgreSQL: pg-store.test.ts). */
describe('a SQLite hub database newer than this software', () => {
  it('is refused with OUTPOST_DATABASE_TOO_NEW, untouched', async () => {
    const dir = tempDir('hub-newer');
    await new SqliteHubStore(dir).close();
    const newer = HUB_MIGRATIONS.length + 1;
    const raw = new Database(join(dir, 'hub.db'));
    raw.pragma(`user_version = ${newer}`);
    raw.close();
    expect(() => new SqliteHubStore(dir)).toThrow(
      expect.objectContaining({
        code: 'OUTPOST_DATABASE_TOO_NEW',
        version: newer,
        supported: HUB_MIGRATIONS.length,
      }),
    );
    const after = new Database(join(dir, 'hub.db'), { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(newer);
    after.close();
  });
});
