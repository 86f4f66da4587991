import { afterEach, describe, expect, it } from 'vitest';
import { parseHubConfig } from '../../hub/config.js';
import type { Rejection } from '../../agent/store/rejections.js';
import { TestFleet } from '../helpers/fleet.js';
import { http } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';

describe('conflicts between real agents', () => {
  let fleet: TestFleet;
  afterEach(async () => fleet.close());

  it('a device whose wall clock is an hour behind loses under lww; its write is archived and reported', async () => {
    fleet = new TestFleet({ http: { host: '127.0.0.1', port: 0 } });
    await fleet.startHub();
    const fast = fleet.agent('pi-fast');
    const slow = fleet.agent('pi-slow', { now: () => Date.now() - 3_600_000 }, false);
    await slow.put('notes', 'shared', { by: 'slow' }); // offline, stamped an hour ago
    await fast.put('notes', 'shared', { by: 'fast' });
    await waitFor('fast committed', () => fleet.hub!.store.document('notes', 'shared'));

    const lost = new Promise<Rejection[]>((resolve) => slow.once('rejection', resolve));
    slow.start();
    expect(await lost).toMatchObject([{ collection: 'notes', key: 'shared', outcome: 'conflict', reason: 'lww' }]);
    await waitFor('slow sees the winner', async () => (await slow.get('notes', 'shared'))?.value);
    expect(await slow.get('notes', 'shared')).toMatchObject({ value: { by: 'fast' }, pending: false });

    const { body } = await http<{ conflicts: unknown[] }>('GET', `${fleet.hub!.httpAddress}/v1/conflicts?collection=notes`);
    expect(body.conflicts).toMatchObject([
      {
        key: 'shared',
        policy: 'lww',
        loser: { origin: 'pi-slow', value: { by: 'slow' } },
        winner: { origin: 'pi-fast', value: { by: 'fast' } },
      },
    ]);

    // Having heard from the hub, the slow device's clock is no longer behind: its next write wins.
    await slow.put('notes', 'shared', { by: 'slow, later' });
    await waitFor('fast sees it', async () => (await fast.get('notes', 'shared', { confirmed: true }))?.value);
    await waitFor(
      'fast sees the later write',
      async () => ((await fast.get('notes', 'shared'))?.value as { by: string }).by === 'slow, later',
    );
  });

  it('writes made at the hub over HTTP reach the agents; If-Match makes them conditional', async () => {
    fleet = new TestFleet({
      http: { host: '127.0.0.1', port: 0 },
      config: parseHubConfig({ collections: { orders: { conflict: 'reject' } } }),
    });
    await fleet.startHub();
    const a = fleet.agent('pi-a');
    const base = fleet.hub!.httpAddress!;
    const put = await http<{ outcome: string; lsn: number }>('PUT', `${base}/v1/docs/orders/o1`, { qty: 1 });
    expect(put).toMatchObject({ status: 200, body: { outcome: 'committed', lsn: 1 } });
    await waitFor('agent has it', () => a.get('orders', 'o1'));

    await a.put('orders', 'o1', { qty: 2 }, { ifVersion: 1 });
    await waitFor('agent write committed', async () => (await fleet.hub!.store.document('orders', 'o1'))?.version === 2);
    const stale = await fetch(`${base}/v1/docs/orders/o1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'if-match': '"1"' },
      body: JSON.stringify({ qty: 3 }),
    });
    expect(stale.status).toBe(409);
    expect(await stale.json()).toMatchObject({ code: 'OUTPOST_WRITE_CONFLICT', reason: 'stale_base', lsn: 2 });

    // A condition that cannot be read is refused, never dropped (the write would commit unconditionally).
    for (const header of ['"-1e400"', '1.5', 'abc', '']) {
      const unreadable = await fetch(`${base}/v1/docs/orders/o1`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', 'if-match': header },
        body: JSON.stringify({ qty: 4 }),
      });
      expect({ header, status: unreadable.status }).toEqual({ header, status: 400 });
      expect(await unreadable.json()).toMatchObject({ code: 'OUTPOST_INVALID_HEADER' });
    }
    expect((await fleet.hub!.store.document('orders', 'o1'))?.version).toBe(2);
    expect((await http('PATCH', `${base}/v1/docs/orders/o1`, { shipped: true })).status).toBe(200);
    expect((await http('DELETE', `${base}/v1/docs/orders/o2`)).status).toBe(200);
    await waitFor('agent sees the hub patch', async () => ((await a.get('orders', 'o1'))?.value as { shipped?: boolean }).shipped);
    expect(await a.get('orders', 'o1')).toMatchObject({ value: { qty: 2, shipped: true }, version: 3 });
    expect(await http('PUT', `${base}/v1/docs/Bad/x`, 1)).toMatchObject({
      status: 422,
      body: { code: 'OUTPOST_WRITE_REJECTED', reason: 'invalid_collection' },
    });
  });
});
