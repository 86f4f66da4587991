import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MOSQUITTO, MosquittoProcess, NO_MOSQUITTO } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { http, OutpostProcess, runOutpost } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

const CONFIG = 'access:\n  default: { read: ["*"], write: ["*"] }\npartitions:\n  shop: [orders]\n';
const HUB_PASSWORD = 'hub-secret-for-partition-cli';

const run = runOutpost;

/** The JSON log lines of a process with this message. */
const lines = (p: OutpostProcess, msg: string): Array<Record<string, unknown>> =>
  p.output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);
const leads = (p: OutpostProcess): string[] => lines(p, 'leading: this hub process is the writer').map((l) => l.partition as string);

describe('outpost hub --partitions', () => {
  const config = (): string => {
    const file = join(tempDir('partitions-cli'), 'hub.yaml');
    writeFileSync(file, CONFIG);
    return file;
  };

  it('refuses partitions on the embedded broker, saying they need an external one', () => {
    const file = config();
    for (const extra of [[], ['--partitions', 'default,shop'], ['--partitions', 'default']]) {
      const result = run(['hub', '--dev', '--port', '0', '--data', tempDir('partitions-cli'), '--config', file, ...extra]);
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(
        /configuration error: the hub config assigns collections to partitions \(shop\): partitions need an external broker \(--broker\)/,
      );
    }
  });

  it('refuses a partition the config does not have, from the flag or the environment', () => {
    const file = config();
    const byFlag = run([
      'hub',
      '--broker',
      'mqtt://127.0.0.1:1',
      '--data',
      tempDir('partitions-cli'),
      '--config',
      file,
      '--partitions',
      'default,billing',
    ]);
    expect(byFlag.status).toBe(1);
    expect(byFlag.stderr).toMatch(/option --partitions: billing is not a partition of the hub config \(it has default, shop\)/);
    const byEnv = run(['hub', '--broker', 'mqtt://127.0.0.1:1', '--data', tempDir('partitions-cli'), '--config', file], {
      OUTPOST_PARTITIONS: 'nope',
    });
    expect(byEnv.status).toBe(1);
    expect(byEnv.stderr).toMatch(/option --partitions: nope is not a partition/);
  });
});

const skip = NO_POSTGRES ?? (MOSQUITTO ? undefined : NO_MOSQUITTO);
if (skip) console.warn(`outpost hub --partitions on PostgreSQL and Mosquitto: ${skip}`);

describe.skipIf(skip !== undefined)('outpost hub --partitions on PostgreSQL behind Mosquitto', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  });

  it('processes lead different partitions; a standby takes over only the partition whose leader died', async () => {
    const url = await freshDatabase();
    const dir = tempDir('partitions-cli-pg');
    const file = join(dir, 'hub.yaml');
    writeFileSync(file, CONFIG);
    const exported = run(['hub', 'export', 'mosquitto', '--store', url, '--out', join(dir, 'mosquitto'), '--config', file], {
      OUTPOST_BROKER_PASSWORD: HUB_PASSWORD,
    });
    expect(exported.status, exported.stderr).toBe(0);
    const broker = await MosquittoProcess.start(join(dir, 'mosquitto'));
    closers.push(() => broker.stop());
    const hub = async (name: string, partitions?: string): Promise<{ p: OutpostProcess; http: string }> => {
      const port = await freePort();
      const p = new OutpostProcess(
        [
          'hub',
          '--broker',
          broker.url,
          '--store',
          url,
          '--data',
          join(dir, name),
          '--config',
          file,
          '--http',
          `127.0.0.1:${port}`,
          ...(partitions !== undefined ? ['--partitions', partitions] : []),
        ],
        { OUTPOST_BROKER_PASSWORD: HUB_PASSWORD },
      );
      closers.push(() => p.kill('SIGTERM'));
      return { p, http: `http://127.0.0.1:${port}` };
    };

    const a = await hub('hub-a', 'default');
    await waitFor('a leads default', () => leads(a.p).includes('default'), 15_000);
    const b = await hub('hub-b', 'shop');
    await waitFor('b leads shop', () => leads(b.p).includes('shop'), 15_000);
    const c = await hub('hub-c'); // every partition: stands by for both
    await waitFor(
      'c stands by for both',
      () => lines(c.p, 'standing by: another hub process leads; taking over when it stops').length === 2,
      15_000,
    );

    // Writes over b's HTTP API go to shop's log; a write there for the default partition is refused.
    await waitFor('b answers', async () => (await http('GET', `${b.http}/readyz`).catch(() => ({ status: 0 }))).status === 200, 15_000);
    expect(await http('PUT', `${b.http}/v1/docs/orders/o1`, { n: 1 })).toMatchObject({
      status: 200,
      body: { outcome: 'committed', lsn: 1 },
    });
    expect(await http('PUT', `${b.http}/v1/docs/notes/n1`, { n: 1 })).toMatchObject({
      status: 409,
      body: { code: 'OUTPOST_WRONG_PARTITION', partition: 'default' },
    });
    expect(await http('PUT', `${a.http}/v1/docs/notes/n1`, { n: 1 })).toMatchObject({
      status: 200,
      body: { outcome: 'committed', lsn: 1 },
    });

    const epochBefore = Number((await sql<{ epoch: string }>(url, 'SELECT epoch FROM public.leadership'))[0]!.epoch);
    await b.p.kill('SIGKILL');
    await waitFor('c leads shop', () => leads(c.p).includes('shop'), 10_000);
    expect(leads(c.p)).toEqual(['shop']);
    const takeover = lines(c.p, 'leading: this hub process is the writer')[0]!;
    expect(takeover.epoch).toBe(Number((await sql<{ epoch: string }>(url, 'SELECT epoch FROM "outpost_p_shop".leadership'))[0]!.epoch));
    // The default partition's leader went on undisturbed.
    expect(Number((await sql<{ epoch: string }>(url, 'SELECT epoch FROM public.leadership'))[0]!.epoch)).toBe(epochBefore);
    expect(a.p.child.exitCode).toBeNull();
    expect(await http('PUT', `${a.http}/v1/docs/notes/n2`, { n: 2 })).toMatchObject({ status: 200, body: { lsn: 2 } });

    // c's HTTP API is the default partition's (the first it serves), which it does not lead yet:
    // SIGTERM a so that c leads both, then its status lists both partitions.
    await a.p.kill('SIGTERM');
    expect(await a.p.exited).toBe(0);
    await waitFor('c leads default too', () => leads(c.p).includes('default'), 10_000);
    await waitFor('c answers', async () => (await http('GET', `${c.http}/readyz`).catch(() => ({ status: 0 }))).status === 200, 15_000);
    const status = await http<{
      partitions: Array<{ partition: string; head: number; epoch: number }>;
      collections: Record<string, number>;
    }>('GET', `${c.http}/v1/status`);
    expect(status.body.partitions.map((p) => [p.partition, p.head])).toEqual([
      ['default', 2],
      ['shop', 1],
    ]);
    expect(status.body.collections).toEqual({ notes: 2, orders: 1 });
    expect(await http('PUT', `${c.http}/v1/docs/orders/o2`, { n: 2 })).toMatchObject({ status: 200, body: { lsn: 2 } });
    await c.p.kill('SIGTERM');
    expect(await c.p.exited).toBe(0);
    expect(
      await sql(
        url,
        "SELECT count(*)::int AS locks FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = current_database()",
      ),
    ).toEqual([{ locks: 0 }]);
  }, 90_000);
});
