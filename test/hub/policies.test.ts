import { unpackAck } from '../../shared/acks.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { CollectionPolicies, loadHubConfig, parseHubConfig, type HubConfig } from '../../hub/config.js';
import { defaultIngestOptions, Ingestor } from '../../hub/ingest.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { encodeHlc, HybridClock } from '../../shared/hlc.js';
import { tempDir } from '../helpers/temp.js';
import { withBytes, type PlainWriteOp } from '../helpers/value-bytes.js';

const now = Date.now();
const at = (offsetMs: number): string => encodeHlc(now + offsetMs, 0);
const INC = { a: 'a'.repeat(32), b: 'b'.repeat(32) };

describe('collection policies', () => {
  let store: SqliteHubStore;
  afterEach(() => store?.db.close());

  function ingestorWith(config: unknown): (agent: 'a' | 'b', ops: PlainWriteOp[]) => Promise<Array<Record<string, unknown>>> {
    store = new SqliteHubStore(tempDir('policy'));
    const ingestor = new Ingestor(store, new HybridClock(), new CollectionPolicies(parseHubConfig(config)), defaultIngestOptions);
    return async (agent, ops) => {
      const out = await ingestor.ingest([{ kind: 'batch', agentId: `pi-${agent}`, batch: { inc: INC[agent], ops: ops.map(withBytes) } }]);
      const reply = out.replies[0]!.message;
      if (reply[0] !== 'ack') throw new Error(`expected an ack, got ${reply[0]}`);
      return unpackAck(reply[1]);
    };
  }

  it('lww: the later timestamp wins whatever the arrival order, and the loser is archived', async () => {
    const send = ingestorWith({});
    expect(await send('a', [{ seq: 1, c: 'notes', k: 'n', op: 'put', v: 'newer', hlc: at(0) }])).toMatchObject([
      { outcome: 'committed', lsn: 1 },
    ]);
    // pi-b's clock is an hour behind; its concurrent write arrives later and loses.
    expect(await send('b', [{ seq: 1, c: 'notes', k: 'n', op: 'put', v: 'older', hlc: at(-3_600_000) }])).toMatchObject([
      { outcome: 'conflict', lsn: 1, reason: 'lww' },
    ]);
    expect(store.db.document('notes', 'n')).toMatchObject({ value: 'newer', version: 1 });
    expect(store.db.conflicts({ limit: 10 })).toMatchObject([
      {
        collection: 'notes',
        key: 'n',
        policy: 'lww',
        reason: 'lww',
        loser: { origin: 'pi-b', incarnation: INC.b, seq: 1, op: 'put', value: 'older' },
        winner: { lsn: 1, origin: 'pi-a', value: 'newer' },
      },
    ]);
  });

  it('lww: a concurrent write with a later timestamp overwrites, and the overwritten version is archived', async () => {
    const send = ingestorWith({});
    await send('a', [{ seq: 1, c: 'notes', k: 'n', op: 'put', v: 'first', hlc: at(-1000) }]);
    expect(await send('b', [{ seq: 1, c: 'notes', k: 'n', op: 'put', v: 'second', hlc: at(0), base: 0 }])).toMatchObject([
      { outcome: 'committed', lsn: 2 },
    ]);
    expect(store.db.conflicts({ limit: 10 })).toMatchObject([
      { reason: 'overwritten', loser: { origin: 'pi-a', value: 'first' }, winner: { lsn: 2, origin: 'pi-b' } },
    ]);
    // A write made after seeing version 2 is not a conflict.
    await send('a', [{ seq: 2, c: 'notes', k: 'n', op: 'put', v: 'third', hlc: at(10), base: 2 }]);
    expect(store.db.conflicts({ limit: 10 })).toHaveLength(1);
  });

  it('reject: the first committer wins against the base version; a device chains its own writes', async () => {
    const send = ingestorWith({ collections: { orders: { conflict: 'reject' } } });
    await send('a', [{ seq: 1, c: 'orders', k: 'o1', op: 'put', v: { qty: 1 }, hlc: at(0) }]);
    // Both devices saw version 1. pi-a commits twice (its second write is based on its own first).
    expect(
      await send('a', [
        { seq: 2, c: 'orders', k: 'o1', op: 'put', v: { qty: 2 }, hlc: at(1), base: 1 },
        { seq: 3, c: 'orders', k: 'o1', op: 'patch', v: { note: 'x' }, hlc: at(2), base: 1 },
      ]),
    ).toMatchObject([
      { outcome: 'committed', lsn: 2 },
      { outcome: 'committed', lsn: 3 },
    ]);
    // pi-b's write, made against version 1, loses although its timestamp is later.
    expect(await send('b', [{ seq: 1, c: 'orders', k: 'o1', op: 'put', v: { qty: 9 }, hlc: at(5000), base: 1 }])).toMatchObject([
      { outcome: 'conflict', lsn: 3, reason: 'stale_base' },
    ]);
    expect(store.db.document('orders', 'o1')).toMatchObject({ value: { qty: 2, note: 'x' } });
    expect(store.db.conflicts({ collection: 'orders', limit: 10 })).toMatchObject([
      { policy: 'reject', reason: 'stale_base', loser: { origin: 'pi-b', value: { qty: 9 } } },
    ]);
  });

  it('merge: each field of a patch is last-writer-wins on its own timestamp', async () => {
    const send = ingestorWith({ collections: { profiles: { conflict: 'merge' } } });
    await send('a', [{ seq: 1, c: 'profiles', k: 'p', op: 'put', v: { name: 'Ada', city: 'Paris', lang: 'fr' }, hlc: at(0) }]);
    await send('a', [{ seq: 2, c: 'profiles', k: 'p', op: 'patch', v: { city: 'Lyon' }, hlc: at(20) }]);
    // pi-b patched offline at t+10: its city is older than pi-a's, its lang is newer.
    expect(
      await send('b', [{ seq: 1, c: 'profiles', k: 'p', op: 'patch', v: { city: 'Nice', lang: 'en' }, hlc: at(10), base: 1 }]),
    ).toMatchObject([{ outcome: 'committed', lsn: 3 }]);
    expect(store.db.document('profiles', 'p')?.value).toEqual({ name: 'Ada', city: 'Lyon', lang: 'en' });
    expect(store.db.conflicts({ limit: 10 })).toMatchObject([
      { policy: 'merge', reason: 'merge', loser: { origin: 'pi-b', value: { city: 'Nice' } }, winner: { lsn: 3 } },
    ]);
    // A patch whose every field is older loses whole.
    expect(await send('b', [{ seq: 2, c: 'profiles', k: 'p', op: 'patch', v: { city: 'Nice' }, hlc: at(11), base: 1 }])).toMatchObject([
      { outcome: 'conflict', reason: 'merge' },
    ]);
  });

  it("validates committed values against the collection's JSON Schema, patches included", async () => {
    const send = ingestorWith({
      collections: {
        readings: {
          schema: {
            type: 'object',
            required: ['celsius'],
            properties: { celsius: { type: 'number' } },
          },
        },
      },
    });
    expect(
      await send('a', [
        { seq: 1, c: 'readings', k: 'r1', op: 'put', v: { celsius: 'hot' }, hlc: at(0) },
        { seq: 2, c: 'readings', k: 'r1', op: 'put', v: { celsius: 20 }, hlc: at(1) },
        { seq: 3, c: 'readings', k: 'r1', op: 'patch', v: { celsius: null }, hlc: at(2) },
        { seq: 4, c: 'readings', k: 'r1', op: 'del', hlc: at(3) },
      ]),
    ).toMatchObject([
      { outcome: 'rejected', reason: 'schema', detail: expect.stringContaining('/celsius must be number') as string },
      { outcome: 'committed', lsn: 1 },
      { outcome: 'rejected', reason: 'schema', detail: expect.stringContaining('celsius') as string },
      { outcome: 'committed', lsn: 2 },
    ]);
  });

  it('refuses undeclared collections when told to', async () => {
    const send = ingestorWith({ undeclared: 'reject', collections: { known: {} } });
    expect(
      await send('a', [
        { seq: 1, c: 'unknown', k: 'k', op: 'put', v: 1, hlc: at(0) },
        { seq: 2, c: 'known', k: 'k', op: 'put', v: 1, hlc: at(0) },
      ]),
    ).toMatchObject([{ outcome: 'rejected', reason: 'unknown_collection' }, { outcome: 'committed' }]);
  });
});

describe('hub configuration file', () => {
  it('reads YAML, fills in defaults, and names a wrong option', async () => {
    const dir = tempDir('config');
    const good = join(dir, 'hub.yaml');
    writeFileSync(
      good,
      'collections:\n  orders:\n    conflict: reject\n    durability: hub\ndefaults:\n  conflict: merge\nretention:\n  maxEntries: 1000\n',
    );
    const config: HubConfig = loadHubConfig(good);
    const buffering = { priority: 'normal', ttlSeconds: 0, maxPending: 0, overflow: 'reject' };
    expect(config.collections.orders).toEqual({ conflict: 'reject', durability: 'hub', ...buffering });
    expect(config.defaults).toEqual({ conflict: 'merge', durability: 'local', ...buffering });
    expect(config.retention).toEqual({ maxAgeHours: 0, maxEntries: 1000, intervalSeconds: 60 });

    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'collections:\n  orders:\n    conflict: newest\n');
    expect(() => loadHubConfig(bad)).toThrow(
      /\/collections\/orders\/conflict must be equal to one of the allowed values \(lww, reject, merge\)/,
    );
    writeFileSync(bad, 'collections:\n  firmware:\n    blobs: sometimes\n');
    expect(() => loadHubConfig(bad)).toThrow(/\/collections\/firmware\/blobs must be equal to one of the allowed values \(eager, lazy\)/);
    const blobs = new CollectionPolicies(parseHubConfig({ collections: { firmware: { blobs: 'lazy' } } }));
    expect([blobs.holdsBlobs('firmware'), blobs.holdsBlobs('readings')]).toEqual([true, false]);
    writeFileSync(bad, 'colections: {}\n');
    expect(() => loadHubConfig(bad)).toThrow(/colections/);
    expect(() => loadHubConfig(join(dir, 'missing.yaml'))).toThrow(/cannot read hub config/);
    expect(() => new CollectionPolicies(parseHubConfig({ collections: { x: { schema: { type: 'nonsense' } } } }))).toThrow(
      /collections.x.schema is not a valid JSON Schema/,
    );
  });

  it('accepts the example configuration shipped in deploy/', async () => {
    const example = loadHubConfig(fileURLToPath(new URL('../../deploy/hub/hub.yaml', import.meta.url)));
    const policies = new CollectionPolicies(example);
    expect(policies.get('orders')).toMatchObject({ conflict: 'reject', durability: 'hub' });
    expect(policies.get('sensors')!.check({ celsius: 'warm' })).toMatch(/celsius/);
  });
});
