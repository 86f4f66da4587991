import { userInfo } from 'node:os';
import pg from 'pg';

/**
 * The local PostgreSQL the store tests run on. `OUTPOST_TEST_PG_URL` names a role that may
 * create databases; by default the server's unix socket as the OS user (`.ci/run` creates that
 * role, a superuser, for root; peer authentication needs no password).
 */
export const PG_ADMIN_URL =
  process.env.OUTPOST_TEST_PG_URL ?? `postgresql:///postgres?host=/var/run/postgresql&user=${encodeURIComponent(userInfo().username)}`;

/** Why PostgreSQL cannot be used, or undefined when it can. */
export async function postgresUnavailable(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return (
      `PostgreSQL is not reachable at ${PG_ADMIN_URL} (${(error as Error).message}): the PostgreSQL store tests are skipped; ` +
      'start it (pg_ctlcluster 15 main start) or set OUTPOST_TEST_PG_URL'
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}
