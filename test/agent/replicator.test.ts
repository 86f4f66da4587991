import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Replicator } from '../../agent/replicator.js';
import { AgentStore } from '../../agent/store/agent-store.js';
import { encodeHlc } from '../../shared/hlc.js';
import type { Change, PullMessage } from '../../shared/messages.js';
import { encodeValue } from '../../shared/value-bytes.js';
import { tempDir } from '../helpers/temp.js';

const hlc = encodeHlc(Date.now(), 0);
/** A page is applied on the turn after it arrives (Replicator#afterSending). */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const change = (lsn: number): Change => ({ lsn, c: 'x', k: `k${lsn}`, op: 'put', v: encodeValue(lsn), hlc, o: 'pi-other' });

describe('replicator', () => {
  let store: AgentStore;
  afterEach(() => store?.close());

  function setup(scope?: { partition: string; inPartition: (c: string) => boolean; collections: string[] }): {
    replicator: Replicator;
    pulls: PullMessage[1][];
  } {
    store = new AgentStore(tempDir('replicator'));
    const pulls: PullMessage[1][] = [];
    const replicator = new Replicator(
      store,
      {
        send: (pull) => (pulls.push(pull[1]), true),
        onApplied: () => undefined,
        onProgress: () => undefined,
      },
      { partition: 'default', collections: undefined, ...scope, pageLimit: 100, pullTimeoutMs: 60_000 },
      pino({ level: 'silent' }),
    );
    return { replicator, pulls };
  }

  it("follows its own partition's log: its watermark, and only the replicated collections of that partition", async () => {
    const { replicator, pulls } = setup({
      partition: 'billing',
      inPartition: (c) => c === 'x' || c === 'orders',
      collections: ['x', 'docs'],
    });
    replicator.pull();
    expect(pulls).toMatchObject([{ from: 0, cs: ['x'] }]);
    replicator.onPage(['page', { id: pulls[0]!.id, from: 0, to: 9, more: false, hlc, changes: [change(4)] }]);
    await nextTurn();
    expect(store.partitions.watermarkOf('billing')).toBe(9);
    expect(store.partitions.watermarkOf('default')).toBe(0); // the default partition's log is another LSN space
    expect(replicator.replicates('x')).toBe(true);
    expect(replicator.replicates('docs')).toBe(false); // replicated here, but in another partition
  });

  it('asks nothing of a partition none of whose collections this device replicates', () => {
    const { replicator, pulls } = setup({ partition: 'billing', inPartition: (c) => c === 'orders', collections: ['docs'] });
    replicator.onConnected();
    replicator.pull();
    replicator.stop();
    expect(pulls).toEqual([]);
    expect(replicator.pulling).toBe(false);
  });

  it('applies a change set that follows on, and pulls on a gap, knowing how far behind it is', async () => {
    const { replicator, pulls } = setup();
    replicator.onChanges(['changes', { c: 'x', prev: 0, hlc, changes: [change(1), change(2)] }]);
    expect(store.replica.cursor('x')).toBe(2);
    expect(pulls).toHaveLength(0);

    replicator.onChanges(['changes', { c: 'x', prev: 5, hlc, changes: [change(6)] }]); // 3..5 missed
    expect(store.replica.cursor('x')).toBe(2);
    expect(replicator.heads.get('x')).toBe(6);
    expect(replicator.pulling).toBe(true);
    expect(pulls).toMatchObject([{ from: 0 }]);

    // A late answer to some other pull is ignored; the answer to this one catches up.
    replicator.onPage(['page', { id: pulls[0]!.id + 1, from: 0, to: 6, more: false, hlc, changes: [change(3)] }]);
    await nextTurn();
    expect(store.replica.cursor('x')).toBe(2);
    replicator.onPage(['page', { id: pulls[0]!.id, from: 0, to: 6, more: false, hlc, changes: [1, 2, 3, 4, 5, 6].map(change) }]);
    await nextTurn();
    expect(store.replica.cursor('x')).toBe(6);
    expect(store.partitions.watermarkOf('default')).toBe(6);
    expect(replicator.pulling).toBe(false);
  });

  it('asks for the next page while more is set, from where the page ended', () => {
    const { replicator, pulls } = setup();
    replicator.pull();
    replicator.onPage(['page', { id: pulls[0]!.id, from: 0, to: 2, more: true, hlc, changes: [change(1), change(2)] }]);
    expect(pulls[1]).toMatchObject({ from: 2 });
    expect(replicator.pulling).toBe(true);
  });

  it('sends the pull for the next page in the turn a page arrives, and applies the page on the next turn', async () => {
    // MQTT.js writes a message out only when the turn ends: a page applied in the same turn
    // would hold the next pull back until it was written, and the hub would wait for it.
    const { replicator, pulls } = setup();
    replicator.pull();
    replicator.onPage(['page', { id: pulls[0]!.id, from: 0, to: 2, more: true, hlc, changes: [change(1), change(2)] }]);
    expect(pulls).toHaveLength(2);
    expect(store.partitions.watermarkOf('default')).toBe(0);
    await nextTurn();
    expect(store.partitions.watermarkOf('default')).toBe(2);
    expect(store.replica.read('x', 'k2')).toBeDefined();
  });

  it('does not apply a page received before a restart (the history it belongs to was left) or a stop', async () => {
    const { replicator, pulls } = setup();
    replicator.pull();
    replicator.onPage(['page', { id: pulls[0]!.id, from: 0, to: 2, more: false, hlc, changes: [change(1), change(2)] }]);
    replicator.restart();
    await nextTurn();
    expect(store.partitions.watermarkOf('default')).toBe(0);
    expect(pulls.at(-1)).toMatchObject({ from: 0 });
    replicator.onPage(['page', { id: pulls.at(-1)!.id, from: 0, to: 2, more: false, hlc, changes: [change(1), change(2)] }]);
    replicator.stop();
    await nextTurn();
    expect(store.partitions.watermarkOf('default')).toBe(0);
  });

  it('keeps a pull started by a reconnect while the last page of the one before waited to be applied', async () => {
    const { replicator, pulls } = setup();
    replicator.pull();
    replicator.onPage(['page', { id: pulls[0]!.id, from: 0, to: 2, more: false, hlc, changes: [change(1), change(2)] }]);
    replicator.onConnected(); // pulls again from the watermark, 0 (its timeout is a minute away)
    expect(pulls).toHaveLength(2);
    await nextTurn();
    expect(store.partitions.watermarkOf('default')).toBe(2); // the page is the hub's: it is applied
    expect(replicator.pulling).toBe(true); // and the reconnect's pull still awaits its answer
    replicator.stop();
  });
});
