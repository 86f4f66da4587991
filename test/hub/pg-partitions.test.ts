import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHubConfig } from '../../hub/config.js';
import { HubCore } from '../../hub/core.js';
import { LeaderLock, leaderLockKey } from '../../hub/leadership.js';
import type { HubStore } from '../../hub/store/hub-store.js';
import { openHubStore } from '../../hub/store/open-store.js';
import { partitionSchema } from '../../hub/store/pg-schema.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';
import { sleep } from '../helpers/wait.js';

if (NO_POSTGRES) console.warn(`partitions on PostgreSQL: ${NO_POSTGRES}`);

const config = parseHubConfig({ partitions: { 'eu-west': ['orders'], telemetry: ['readings'] } });
const log = pino({ level: 'silent' });

describe('partition names on PostgreSQL', () => {
  it("the default partition stays in the connection's schema (public) and keeps its lock; others get their own", () => {
    expect(partitionSchema('default')).toBeUndefined();
    expect(partitionSchema('eu-west')).toBe('outpost_p_eu-west');
    expect(() => partitionSchema('x'.repeat(54))).toThrow(/too long for a PostgreSQL schema/);
    expect(leaderLockKey('default')).toEqual([0x6f757471]);
    expect(leaderLockKey('eu-west')).toEqual(leaderLockKey('eu-west'));
    expect(leaderLockKey('eu-west')).not.toEqual(leaderLockKey('telemetry'));
    expect(leaderLockKey('telemetry')).toHaveLength(2);
  });
});

describe.skipIf(NO_POSTGRES !== undefined)('partitions on one PostgreSQL database', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  });

  const lead = async (url: string, partition: string, pollMs = 50, signal?: AbortSignal): Promise<LeaderLock> => {
    const lock = await LeaderLock.acquire(url, { log, partition, pollMs, ...(signal && { signal }) });
    closers.push(() => lock.release());
    return lock;
  };
  const core = async (url: string, partition: string, epoch: number): Promise<HubCore> => {
    const store: HubStore = await openHubStore({ store: url, dataDir: tempDir('pg-partition'), partition, epoch });
    const hub = new HubCore({ store, epoch, partition, config, publish: () => undefined });
    closers.push(() => hub.stop());
    return hub;
  };

  it("keeps each partition's log, LSNs and leadership epoch apart, in its own schema", async () => {
    const url = await freshDatabase();
    const [byDefault, byEu] = await Promise.all([lead(url, 'default'), lead(url, 'eu-west')]);
    const [defaultCore, euCore] = await Promise.all([core(url, 'default', byDefault.epoch), core(url, 'eu-west', byEu.epoch)]);

    expect(await euCore.write({ c: 'orders', k: 'o1', op: 'put', v: 1 })).toMatchObject({ outcome: 'committed', lsn: 1 });
    expect(await euCore.write({ c: 'orders', k: 'o2', op: 'put', v: 2 })).toMatchObject({ outcome: 'committed', lsn: 2 });
    expect(await defaultCore.write({ c: 'notes', k: 'n1', op: 'put', v: 1 })).toMatchObject({ outcome: 'committed', lsn: 1 });
    expect(await defaultCore.write({ c: 'orders', k: 'o3', op: 'put', v: 1 })).toMatchObject({
      outcome: 'rejected',
      reason: 'wrong_partition',
    });

    expect(await sql(url, 'SELECT collection, key, lsn FROM "outpost_p_eu-west".log ORDER BY lsn')).toEqual([
      { collection: 'orders', key: 'o1', lsn: '1' },
      { collection: 'orders', key: 'o2', lsn: '2' },
    ]);
    expect(await sql(url, 'SELECT collection, key, lsn FROM public.log ORDER BY lsn')).toEqual([
      { collection: 'notes', key: 'n1', lsn: '1' },
    ]);
    const epochs = async (): Promise<[number, number]> => [
      Number((await sql<{ epoch: string }>(url, 'SELECT epoch FROM public.leadership'))[0]!.epoch),
      Number((await sql<{ epoch: string }>(url, 'SELECT epoch FROM "outpost_p_eu-west".leadership'))[0]!.epoch),
    ];
    expect(await epochs()).toEqual([byDefault.epoch, byEu.epoch]);

    // Another leader of the default partition fences only the default partition's writer.
    await sql(url, 'UPDATE public.leadership SET epoch = epoch + 1');
    await expect(defaultCore.write({ c: 'notes', k: 'n2', op: 'put', v: 2 })).rejects.toThrow(/epoch/);
    expect(await euCore.write({ c: 'orders', k: 'o4', op: 'put', v: 4 })).toMatchObject({ outcome: 'committed', lsn: 3 });

    // A reopened store starts from its own partition's head.
    const reopened = await openHubStore({ store: url, dataDir: tempDir('pg-partition'), partition: 'eu-west' });
    closers.push(() => reopened.close());
    expect(reopened.head).toBe(3);
    expect(await reopened.document('notes', 'n1')).toBeUndefined();
  });

  it('partitions are led by different sessions at once; a second claim on one waits until its leader lets go', async () => {
    const url = await freshDatabase();
    const euLeader = await lead(url, 'eu-west');
    const defaultLeader = await lead(url, 'default');
    const telemetryLeader = await lead(url, 'telemetry');
    // Three sessions hold three different locks at once.
    const held = await sql<{ locks: number }>(
      url,
      "SELECT count(*)::int AS locks FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()",
    );
    expect(held).toEqual([{ locks: 3 }]);
    expect([euLeader.partition, defaultLeader.partition, telemetryLeader.partition]).toEqual(['eu-west', 'default', 'telemetry']);

    let standbyEpoch: number | undefined;
    const standby = lead(url, 'eu-west').then((lock) => (standbyEpoch = lock.epoch));
    await sleep(400);
    expect(standbyEpoch).toBeUndefined();
    await euLeader.release();
    await standby;
    expect(standbyEpoch).toBeGreaterThan(euLeader.epoch);
    // The other partitions were never disturbed.
    expect(Number((await sql<{ epoch: string }>(url, 'SELECT epoch FROM public.leadership'))[0]!.epoch)).toBe(defaultLeader.epoch);
  });

  it('a standby stops waiting when its process stops', async () => {
    const url = await freshDatabase();
    await lead(url, 'telemetry');
    const stopping = new AbortController();
    const standby = LeaderLock.acquire(url, { log, partition: 'telemetry', pollMs: 50, signal: stopping.signal });
    await sleep(200);
    stopping.abort(new Error('the hub is stopping'));
    await expect(standby).rejects.toThrow(/the hub is stopping/);
  });
});
