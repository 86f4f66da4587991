import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { PG_MIGRATIONS } from '../../hub/store/pg-schema.js';
import { HUB_MIGRATIONS } from '../../hub/store/sqlite-schema.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';

/** A hub store written by a newer Outpost is refused with its own code, and left as it was. */
describe('a hub database newer than this software', () => {
  it('is refused on SQLite with OUTPOST_DATABASE_TOO_NEW, untouched', async () => {
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

  it.skipIf(NO_POSTGRES !== undefined)(
    `is refused on PostgreSQL with OUTPOST_DATABASE_TOO_NEW, untouched${NO_POSTGRES ? ` (${NO_POSTGRES})` : ''}`,
    async () => {
      const url = await freshDatabase();
      await (await PostgresHubStore.open(url)).close();
      const newer = PG_MIGRATIONS.length + 1;
      await sql(url, 'INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)', [newer]);
      await expect(PostgresHubStore.open(url)).rejects.toMatchObject({
        code: 'OUTPOST_DATABASE_TOO_NEW',
        version: newer,
        supported: PG_MIGRATIONS.length,
      });
      expect(await sql<{ version: number }>(url, 'SELECT max(version) AS version FROM schema_migrations')).toEqual([{ version: newer }]);
    },
  );
});
