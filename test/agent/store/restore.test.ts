import { describe, expect, it } from 'vitest';
import { DEFAULT_PARTITION } from '../../../shared/topics.js';
import { tempDir } from '../../helpers/temp.js';
import { appendAll, change, openStore, put, queued } from './fixtures.js';
import { valueOf } from '../../helpers/value-bytes.js';

const LINEAGE = 'a'.repeat(32);
const RESTORED = { lineage: 'b'.repeat(32), fork: 3, statusHlc: '0000000000000002' };

describe('agent store: reconciling with a restored hub', () => {
  it('records and takes out what the hub lost, starts the log over, and renumbers what is still pending under a new incarnation', () => {
    const store = openStore();
    store.partitions.setHubLineage(DEFAULT_PARTITION, LINEAGE, '0000000000000001');
    // The replica: versions 1-3 (shared with the backup) and 4-6 (lost), one of them a tombstone.
    store.replica.applyChanges(
      DEFAULT_PARTITION,
      [
        change(1, 'a', { n: 1 }),
        change(2, 'b', { n: 2 }),
        change(3, 'c', { n: 3 }),
        change(4, 'a', { n: 4 }),
        change(5, 'd'),
        change(6, 'e', { n: 6 }),
      ],
      6,
    );
    // This device's writes: one acknowledged at 7 (a patch over b, still in the overlay), one at 2 (released: c holds 3), two pending.
    const [patched, kept] = appendAll(store, [
      { collection: 'docs', key: 'b', op: 'patch', value: { extra: true } },
      put('c', { mine: true }),
      put('f', { pending: 1 }, { base: 6 }),
      put('g', { pending: 2 }),
    ]);
    store.outbox.applyResults(
      DEFAULT_PARTITION,
      [
        { seq: patched!, outcome: 'committed', lsn: 7 },
        { seq: kept!, outcome: 'committed', lsn: 2 },
      ],
      () => true,
    );
    const incarnation = store.partitions.incarnationOf(DEFAULT_PARTITION);

    const done = store.lost.reconcile(DEFAULT_PARTITION, RESTORED, 'pi-1', () => true, 1234);

    expect(done).toMatchObject({ previousLineage: LINEAGE, fork: 3, documents: 3, writes: 1 });
    expect(done.incarnation).not.toBe(incarnation);
    expect(store.partitions.incarnationOf(DEFAULT_PARTITION)).toBe(done.incarnation);
    // Lost: the replica's versions above 3, and the write acknowledged above it as this device saw it.
    const chunk = store.lost.nextChunk(DEFAULT_PARTITION, 100, 1 << 20)!;
    expect(chunk).toMatchObject({ lineage: LINEAGE, fork: 3 });
    expect(chunk.docs.map((d) => [d.k, d.ver, d.op, valueOf(d), d.o])).toEqual([
      ['b', 7, 'put', { n: 2, extra: true }, 'pi-1'],
      ['a', 4, 'put', { n: 4 }, 'pi-x'],
      ['d', 5, 'del', undefined, 'pi-x'],
      ['e', 6, 'put', { n: 6 }, 'pi-x'],
    ]);
    // Taken out: the replica is what the backup had; a is gone until the restored version comes back.
    expect(store.replica.read('docs', 'a')).toBeUndefined();
    expect(store.replica.read('docs', 'b', true)?.value).toEqual({ n: 2 });
    expect(store.replica.read('docs', 'b')?.value).toEqual({ n: 2 });
    expect(store.replica.cursors()).toEqual({});
    expect(store.partitions.watermarkOf(DEFAULT_PARTITION)).toBe(0);
    expect(store.partitions.hubLineageOf(DEFAULT_PARTITION)).toEqual({ lineage: RESTORED.lineage, statusHlc: RESTORED.statusHlc });
    // Pending writes renumbered from 1, their base no higher than the fork.
    expect(queued(store)).toEqual([
      [1, 'f', 'put'],
      [2, 'g', 'put'],
    ]);
    expect(done.renumbered).toEqual([
      { from: 3, to: 1 },
      { from: 4, to: 2 },
    ]);
    expect(store.outbox.pendingFrom(DEFAULT_PARTITION, 1, 10, 1 << 20).find((o) => o.k === 'f')?.base).toBe(3);
    // Pulled from 0 again, the restored version of a comes back (only a version above the replica's lands).
    store.replica.applyChanges(DEFAULT_PARTITION, [change(1, 'a', { n: 1 })], 3);
    expect(store.replica.read('docs', 'a')?.value).toEqual({ n: 1 });
  });

  it('keeps the report across restarts until the hub acknowledged each chunk', () => {
    const dir = tempDir('agent-store');
    const before = openStore(dir);
    before.partitions.setHubLineage(DEFAULT_PARTITION, LINEAGE, '0000000000000001');
    before.replica.applyChanges(
      DEFAULT_PARTITION,
      [4, 5, 6, 7, 8].map((lsn) => change(lsn, `k${lsn}`, { lsn })),
      8,
    );
    before.lost.reconcile(DEFAULT_PARTITION, RESTORED, 'pi-1', () => true);
    before.close();
    const store = openStore(dir);
    expect(store.lost.pendingOf(DEFAULT_PARTITION)).toBe(5);
    const first = store.lost.nextChunk(DEFAULT_PARTITION, 2, 1 << 20)!;
    expect(first.docs.map((d) => d.ver)).toEqual([4, 5]);
    store.lost.acknowledge(DEFAULT_PARTITION, first.lineage, first.id);
    const second = store.lost.nextChunk(DEFAULT_PARTITION, 2, 1 << 20)!;
    expect(second.docs.map((d) => d.ver)).toEqual([6, 7]);
    store.lost.acknowledge(DEFAULT_PARTITION, first.lineage, first.id); // a repeated ack changes nothing
    expect(store.lost.pendingOf(DEFAULT_PARTITION)).toBe(3);
  });

  it('leaves other partitions alone', () => {
    const store = openStore();
    store.partitions.setHubLineage('billing', LINEAGE, '0000000000000001');
    store.replica.applyChanges(DEFAULT_PARTITION, [change(9, 'mine', { default: true })], 9);
    store.replica.applyChanges('billing', [change(9, 'inv', { billing: true }, 'invoices')], 9);
    const done = store.lost.reconcile('billing', RESTORED, 'pi-1', (c) => c === 'invoices');
    expect(done.documents).toBe(1);
    expect(store.replica.read('docs', 'mine')?.version).toBe(9);
    expect(store.partitions.watermarkOf(DEFAULT_PARTITION)).toBe(9);
    expect(store.replica.cursors()).toEqual({ docs: 9 });
  });

  it('reconciles a replica larger than one page: every document above the fork, none below', () => {
    const store = openStore();
    store.partitions.setHubLineage(DEFAULT_PARTITION, LINEAGE, '0000000000000001');
    const changes = Array.from({ length: 2_500 }, (_, i) => change(i + 1, `k${String(i).padStart(5, '0')}`, { i }));
    store.replica.applyChanges(DEFAULT_PARTITION, changes, 2_500);
    const done = store.lost.reconcile(DEFAULT_PARTITION, { ...RESTORED, fork: 100 }, 'pi-1', () => true);
    expect(done.documents).toBe(2_400);
    expect(store.replica.read('docs', 'k00099')).toMatchObject({ version: 100 });
    expect(store.replica.read('docs', 'k00100')).toBeUndefined();
    expect(store.lost.pendingOf(DEFAULT_PARTITION)).toBe(2_400);
  });

  it('rejoins every bucket of the scope: its documents above the fork are taken out, and only a snapshot of each bucket brings them back', () => {
    const store = openStore();
    store.partitions.setHubLineage(DEFAULT_PARTITION, LINEAGE, '0000000000000001');
    const [A, B] = ['AAAAAAAAAAAAAAAA', 'BBBBBBBBBBBBBBBB'];
    store.scope.reconcile(DEFAULT_PARTITION, [A, B], []);
    const inA = (lsn: number, k: string) => ({ ...change(lsn, k, { lsn }), bk: [A] });
    store.replica.applyBucketSnapshot(DEFAULT_PARTITION, A, [inA(2, 'kept'), inA(5, 'lost')], 6, undefined, true);
    store.replica.applyBucketSnapshot(DEFAULT_PARTITION, B, [], 2, ['docs', 'm'], true); // B's snapshot half done

    store.lost.reconcile(DEFAULT_PARTITION, RESTORED, 'pi-1', () => true);

    // The restored hub's version of `lost` is at or below the fork, so its log above the fork
    // would never bring it again: each bucket is fetched anew, as when joined.
    expect(store.replica.read('docs', 'lost')).toBeUndefined();
    expect(store.replica.read('docs', 'kept')?.version).toBe(2);
    expect([...store.scope.held(DEFAULT_PARTITION)]).toEqual([
      [A, { cursor: -1, snapshot: undefined }],
      [B, { cursor: -1, snapshot: undefined }],
    ]);
  });
});
