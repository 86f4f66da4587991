import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll } from 'vitest';
import { PG_ADMIN_URL, postgresUnavailable } from './postgres-server.js';

/** Why PostgreSQL cannot be used, or undefined when it can (checked once, when the file loads). */
export const NO_POSTGRES: string | undefined = await postgresUnavailable();

/**
 * Dropping a database takes a few hundred ms on a busy machine, and the store contract alone
 * makes about fifty: more than the default 30 s for a hook.
 */
const DROP_ALL_TIMEOUT_MS = 180_000;

const made: string[] = [];
afterAll(async () => {
  if (made.length === 0) return;
  await withAdmin(async (admin) => {
    // FORCE: a store a failing test left open must not keep its database alive.
    for (const name of made.splice(0)) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
}, DROP_ALL_TIMEOUT_MS);

/**
 * The URL of a new, empty database, dropped after the test file. Its default collation is a
 * linguistic one (ICU en-US, as production servers often have), where 'B' sorts after 'a': the
 * store must order keys by bytes whatever the server's default.
 */
export async function freshDatabase(): Promise<string> {
  const name = `outpost_test_${randomBytes(6).toString('hex')}`;
  await withAdmin((admin) =>
    admin.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`),
  );
  made.push(name);
  return databaseUrl(name);
}

/** The admin URL pointed at another database on the same server. */
export function databaseUrl(name: string): string {
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Runs SQL on one database directly (to inspect it, or to play another hub raising the epoch). */
export async function sql<R extends pg.QueryResultRow>(url: string, text: string, values?: unknown[]): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

async function withAdmin<T>(fn: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}
