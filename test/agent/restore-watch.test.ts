import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { RestoreWatch } from '../../agent/restore-watch.js';
import type { HubStatusMessage, LostMessage } from '../../shared/messages.js';
import { DEFAULT_PARTITION } from '../../shared/topics.js';
import { change, openStore } from './store/fixtures.js';

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
  function watch() {
    const store = openStore();
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
    expect(w.onHubStatus(status({ fork: 4 }), '')).toBeUndefined();
    expect(store.partitions.hubLineageOf(DEFAULT_PARTITION)?.lineage).toBe(LINEAGE);
  });

  it('a device from before lineages that holds more than a restored hub’s fork reconciles at the fork', () => {
    const { store, w } = watch();
    store.replica.applyChanges(DEFAULT_PARTITION, [change(3, 'a', 1), change(6, 'b', 2)], 6);
    const done = w.onHubStatus(status({ fork: 4, head: 9 }), '');
    expect(done).toMatchObject({ fork: 4, documents: 1 });
    expect(store.replica.read('docs', 'b')).toBeUndefined(); // above the fork: out, and reported
    expect(store.replica.read('docs', 'a')).toMatchObject({ version: 3 });
  });

  it('a late copy of an earlier status changes nothing', () => {
    const { store, w } = watch();
    w.onHubStatus(status({ hlc: '0000018f00000009' }), '');
    store.replica.applyChanges(DEFAULT_PARTITION, [change(12, 'a', 1)], 12);
    expect(w.onHubStatus(status({ hlc: '0000018f00000008', lin: 'b'.repeat(32), fork: 5 }), '')).toBeUndefined();
  });
});
