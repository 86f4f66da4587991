import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { RestoreWatch } from '../../agent/restore-watch.js';
import type { HubStatusMessage, LostMessage } from '../../shared/messages.js';
import { DEFAULT_PARTITION } from '../../shared/topics.js';
import type { AgentStore } from '../../agent/store/agent-store.js';
import { appendAll, change, openStore, put } from './store/fixtures.js';
import { tempDir } from '../helpers/temp.js';

const LINEAGE = 'a'.repeat(32);
const status = (over: Partial<HubStatusMessage[1]>): HubStatusMessage[1] =>
  ({
    v: 3,
    hlc: '0000018f00000009',
    head: 10,
    lin: LINEAGE,
    fork: 0,
    collections: {},
    undeclared: 'allow',
    defaults: {},
    ...over,
  }) as never;

describe('noticing that the hub was restored', () => {
  function watch(store: AgentStore = openStore()) {
    const sent: LostMessage[] = [];
    const w = new RestoreWatch(
      store,
      DEFAULT_PARTITION,
      'pi-1',
      () => true,
      { send: (m) => (sent.push(m), true), connected: () => true },
      { ackTimeoutMs: 1000 },
      pino({ level: 'silent' }),
    );
    return { store, w, sent };
  }

  it('a new device adopts the lineage it first hears', () => {
    const { store, w } = watch();
    expect(w.onHubStatus(status({ fork: 4 }))).toBeUndefined();
    expect(store.partitions.hubLineageOf(DEFAULT_PARTITION)?.lineage).toBe(LINEAGE);
  });

  it('a device from before lineages that holds more than a restored hub’s fork reconciles at the fork', () => {
    const { store, w } = watch();
    store.replica.applyChanges(DEFAULT_PARTITION, [change(3, 'a', 1), change(6, 'b', 2)], 6);
    const done = w.onHubStatus(status({ fork: 4, head: 9 }));
    expect(done).toMatchObject({ fork: 4, documents: 1 });
    expect(store.replica.read('docs', 'b')).toBeUndefined(); // above the fork: out, and reported
    expect(store.replica.read('docs', 'a')).toMatchObject({ version: 3 });
  });

  it('a late copy of an earlier status changes nothing', () => {
    const { store, w } = watch();
    w.onHubStatus(status({ hlc: '0000018f00000009' }));
    store.replica.applyChanges(DEFAULT_PARTITION, [change(12, 'a', 1)], 12);
    expect(w.onHubStatus(status({ hlc: '0000018f00000008', lin: 'b'.repeat(32), fork: 5 }))).toBeUndefined();
  });

  // The hub restarted (not restored) at S2 with head 0 and then committed LSN 1; S2 reaches this
  // device only after LSN 1 did, and after the agent restarted, which forgets what it heard.
  const S1 = '0000018f00000001';
  const S2 = '0000018f00000005';
  const AFTER_S2 = '0000018f00000007';
  const LATER = '0000018f00000009';
  describe('a status of a hub that restarted, delivered after a change it committed later and after the agent restarted', () => {
    function restartedWith(learn: (store: AgentStore) => void) {
      const dir = tempDir('restore-watch');
      const before = watch(openStore(dir));
      before.w.onHubStatus(status({ hlc: S1, head: 0 }));
      learn(before.store);
      // The next process: the database as the last left it, and nothing heard yet ('' below).
      return watch(openStore(dir));
    }
    const ways: Array<[string, (store: AgentStore) => void]> = [
      ['a live change set', (store) => void store.replica.applyChanges(DEFAULT_PARTITION, [change(1, 'a', 1)], undefined, AFTER_S2)],
      ['a pull page', (store) => void store.replica.applyChanges(DEFAULT_PARTITION, [], 1, AFTER_S2)],
      [
        'a snapshot',
        (store) =>
          void store.replica.applySnapshotPage(DEFAULT_PARTITION, [change(1, 'a', 1)], 1, undefined, ['docs'], () => true, AFTER_S2),
      ],
      [
        'an ack',
        (store) => {
          const [seq] = appendAll(store, [put('a', 1)]);
          store.outbox.applyResults(DEFAULT_PARTITION, [{ seq: seq!, outcome: 'committed', lsn: 1 }], () => true, AFTER_S2);
        },
      ],
    ];
    for (const [how, learn] of ways) {
      it(`is no restore (learned through ${how})`, () => {
        const { store, w } = restartedWith(learn);
        expect(w.onHubStatus(status({ hlc: S2, head: 0 }))).toBeUndefined();
        expect(store.lost.pendingOf(DEFAULT_PARTITION), 'nothing reported lost').toBe(0);
      });
      it(`but a status newer than that is (learned through ${how})`, () => {
        const { w } = restartedWith(learn);
        expect(w.onHubStatus(status({ hlc: LATER, head: 0 }))).toMatchObject({ fork: 0 });
      });
    }
  });

  describe('a hub restored without a mark, whose first changes arrive before its status', () => {
    // The old hub reached LSN 100 (learned at OLD); restored, the hub restarts at head 50 (status
    // RESTORED_AT) and commits 51, which this device applies before the status reaches it.
    const OLD = '0000018f00000002';
    const RESTORED_AT = '0000018f00000005';
    const FIRST_CHANGE = '0000018f00000007';
    function heardOld() {
      const dir = tempDir('restore-watch');
      const { store, w } = watch(openStore(dir));
      w.onHubStatus(status({ hlc: '0000018f00000001', head: 0 }));
      store.replica.applyChanges(DEFAULT_PARTITION, [change(100, 'a', 1)], undefined, OLD);
      return { dir, store, w };
    }
    for (const [where, collection] of [
      ['another collection', 'other'],
      ['the same collection', 'docs'],
    ] as const) {
      for (const restart of [false, true]) {
        it(`is still noticed (its first change in ${where}), ${restart ? 'after a restart' : 'in the same run'}`, () => {
          const { dir, store, w } = heardOld();
          store.replica.applyChanges(DEFAULT_PARTITION, [change(51, 'b', 2, collection)], undefined, FIRST_CHANGE);
          const judge = restart ? watch(openStore(dir)).w : w;
          expect(judge.onHubStatus(status({ hlc: RESTORED_AT, head: 50 }))).toMatchObject({ fork: 50 });
        });
      }
    }
    it('reconciling forgets the clocks of the history it left', () => {
      const { store, w } = heardOld();
      expect(w.onHubStatus(status({ hlc: RESTORED_AT, head: 50 }))).toMatchObject({ fork: 50 });
      // The cursor went back to nothing with its clock: a later status with a low head judges only what comes after.
      store.replica.applyChanges(DEFAULT_PARTITION, [change(3, 'c', 3)], undefined, '0000018f00000008');
      expect(w.onHubStatus(status({ hlc: '0000018f00000009', head: 3 }))).toBeUndefined();
    });
  });
});
