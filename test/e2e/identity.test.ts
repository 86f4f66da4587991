import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

describe('agent identity: (agent, incarnation, seq)', () => {
  let fleet: TestFleet;
  afterEach(async () => fleet.close());

  it('a reinstalled agent (new database, same id) is not silenced by its old sequence numbers', async () => {
    fleet = new TestFleet();
    const hub = await fleet.startHub();
    let a = fleet.agent('pi-a');
    for (let i = 0; i < 5; i++) await a.put('notes', `old${i}`, i);
    await waitFor('uploaded', () => a.status().outboxDepth === 0);
    const oldIncarnation = a.status().incarnation;
    await a.close();
    rmSync(join(fleet.dir, 'pi-a'), { recursive: true });

    a = fleet.agent('pi-a');
    expect(a.status().incarnation).not.toBe(oldIncarnation);
    const receipt = await a.put('notes', 'new', 'after reinstall', { durability: 'hub' });
    expect(receipt).toMatchObject({ seq: 1, lsn: 6 });
    expect((await hub.store.document('notes', 'new'))?.value).toBe('after reinstall');
    // The fresh replica is filled from the hub.
    await waitFor('old notes back', () => a.get('notes', 'old4'));
  });

  it('a device restored from an old backup is detected: its new writes are kept, not taken for duplicates', async () => {
    fleet = new TestFleet();
    const hub = await fleet.startHub();
    let a = fleet.agent('pi-a');
    await a.put('notes', 'n1', 'one', { durability: 'hub' });
    await a.close();
    const backup = join(fleet.dir, 'backup');
    cpSync(join(fleet.dir, 'pi-a'), backup, { recursive: true }); // backup taken after seq 1

    a = fleet.agent('pi-a');
    await a.put('notes', 'n2', 'two', { durability: 'hub' });
    await a.put('notes', 'n3', 'three', { durability: 'hub' });
    await a.close();
    rmSync(join(fleet.dir, 'pi-a'), { recursive: true });
    cpSync(backup, join(fleet.dir, 'pi-a'), { recursive: true }); // the SD card is restored

    a = fleet.agent('pi-a');
    const before = a.status().incarnation;
    const reincarnated = new Promise<[string, string]>((resolve) => a.once('reincarnated', (p, n) => resolve([p, n])));
    // Seq 2 again, with different content; the app waits for the hub across the reincarnation.
    const n4 = await a.put('notes', 'n4', 'four, written after the restore', { durability: 'hub' });
    expect((await reincarnated)[0]).toBe(before);
    // The wait followed the write to its new number, and the receipt says where it is now.
    expect(n4).toMatchObject({ seq: 1, lsn: 4 });
    expect(n4.incarnation).not.toBe(before);
    await waitFor('n4 committed', () => hub.store.document('notes', 'n4'));
    await waitFor('outbox drained', () => a.status().outboxDepth === 0);
    expect(a.status().incarnation).not.toBe(before);
    expect((await hub.store.document('notes', 'n2'))?.value).toBe('two'); // nothing overwritten or merged
    expect((await hub.store.document('notes', 'n4'))?.value).toBe('four, written after the restore');
    expect(hub.store.head).toBe(4);
    await waitFor('restored device catches up', async () => (await a.get('notes', 'n3'))?.value === 'three');
  });
});
