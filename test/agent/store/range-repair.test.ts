import { describe, expect, it } from 'vitest';
import type { AgentStore } from '../../../agent/store/agent-store.js';
import { encodeCbor } from '../../../shared/codec.js';
import { keyPosition, rangeOf } from '../../../shared/digest.js';
import type { Change } from '../../../shared/messages.js';
import { tempDir } from '../../helpers/temp.js';
import { byHand, digestOf, newest } from './digest-fixtures.js';
import { appendAll, change, openStore, put } from './fixtures.js';

const LANE = 'default';
const UNBOUNDED = { after: undefined, through: undefined };

/** What the hub holds as of LSN 62: k0…k59, k5 and k6 deleted since. */
const hubAt62 = (): Change[] => [
  ...Array.from({ length: 60 }, (_, i) => change(i + 1, `k${i}`, { i })),
  change(61, 'k5'),
  change(62, 'k6'),
];

/** A replica that applied everything the hub has, in a directory of its own (for editing by hand). */
function replicaOf(hub: Change[]): { dir: string; store: AgentStore } {
  const dir = tempDir('agent-store');
  const store = openStore(dir);
  store.replica.applyChanges(LANE, hub);
  return { dir, store };
}

/** The hub's page of a repair: its newest documents, in key order. */
const pageOf = (docs: Change[]): Change[] => newest(docs).sort((a, b) => (a.k < b.k ? -1 : 1));

const rot = (dir: string, key: string): void =>
  void byHand(dir, (db) => db.prepare("UPDATE documents SET value = ? WHERE collection = 'docs' AND key = ?").run(encodeCbor('rot'), key));
const lose = (dir: string, key: string): void =>
  void byHand(dir, (db) => db.prepare("DELETE FROM documents WHERE collection = 'docs' AND key = ?").run(key));

/** The first of the keys `${prefix}0`, `${prefix}1`, … that `fits`. */
function keyThat(prefix: string, fits: (key: string) => boolean): string {
  for (let i = 0; ; i++) if (fits(`${prefix}${i}`)) return `${prefix}${i}`;
}

describe('agent store: range repair', () => {
  it('puts the ranges back as the hub has them: a value rotten at its version, a lost row and tombstone, a phantom; what is newer, and the outbox, stay', () => {
    const hub = hubAt62();
    const { dir, store } = replicaOf(hub);
    // Damage: a value rots under its version, a row and a tombstone are lost; and the replica
    // holds documents the hub does not (a put and a tombstone).
    rot(dir, 'k7');
    lose(dir, 'k8');
    lose(dir, 'k5');
    byHand(dir, (db) => db.prepare("UPDATE documents SET evicted = 1 WHERE key = 'k11'").run()); // taken for a stub
    store.replica.applyChanges(LANE, [change(30, 'phantom', 'not at the hub'), change(31, 'phantom-del')]);
    // Since the hub's page was read, the replica applied newer versions: of a listed document, and of one the page predates.
    const later = [change(70, 'k9', 'newer'), change(71, 'fresh', 'newer still')];
    store.replica.applyChanges(LANE, later);
    // The app's pending writes, one on a lost document.
    appendAll(store, [put('k10', { mine: 1 }), put('k8', { mine: 2 })]);
    expect(store.replica.scrub(undefined, Infinity).rotten).toEqual([{ collection: 'docs', key: 'k7' }]);

    const page = pageOf(hub);
    const repaired = store.replica.repairRanges('docs', 0, [0], page, UNBOUNDED, 62);
    expect(repaired.written).toEqual(['k11', 'k5', 'k7', 'k8'].map((key) => ({ collection: 'docs', key })));
    expect(repaired.removed).toEqual(['phantom', 'phantom-del'].map((key) => ({ collection: 'docs', key })));
    expect(repaired.bytes).toBe(encodeCbor({ i: 11 }).length + encodeCbor({ i: 7 }).length + encodeCbor({ i: 8 }).length);

    expect(store.replica.digest('docs')).toBe(digestOf(newest([...hub, ...later])));
    expect(store.replica.recountDigest('docs')).toBe(digestOf(newest([...hub, ...later])));
    expect(store.replica.scrub(undefined, Infinity).rotten).toEqual([]);
    expect(store.replica.read('docs', 'k7', true)).toMatchObject({ value: { i: 7 }, version: 8 });
    expect(store.replica.versionOf('docs', 'k5')).toBe(61);
    expect(store.replica.read('docs', 'k9', true)).toMatchObject({ value: 'newer', version: 70 });
    expect(store.replica.read('docs', 'fresh', true)).toMatchObject({ value: 'newer still', version: 71 });
    expect(store.replica.versionOf('docs', 'phantom')).toBe(0);
    expect(store.replica.versionOf('docs', 'phantom-del')).toBe(0);
    expect(store.outbox.pendingCount()).toBe(2);
    expect(store.replica.read('docs', 'k8')).toMatchObject({ value: { mine: 2 }, version: 9, pending: true });
    expect(store.replica.read('docs', 'k10')).toMatchObject({ value: { mine: 1 }, version: 11, pending: true });

    // Done again, it finds nothing to do.
    expect(store.replica.repairRanges('docs', 0, [0], page, UNBOUNDED, 62)).toEqual({ written: [], removed: [], bytes: 0 });
  });

  it('touches only the ranges and the key window asked for', () => {
    const hub = hubAt62();
    const { dir, store } = replicaOf(hub);
    const ranges = new Set([rangeOf(keyPosition('k7'), 4)]);
    const inRanges = (key: string): boolean => ranges.has(rangeOf(keyPosition(key), 4));
    const window = { after: 'j', through: 'p' };
    // Phantoms: in the ranges and the window, outside the ranges, outside the window.
    const phantoms = [keyThat('m', inRanges), keyThat('m', (k) => !inRanges(k)), keyThat('z', inRanges)];
    store.replica.applyChanges(
      LANE,
      phantoms.map((k, i) => change(40 + i, k, 'phantom')),
    );
    const elsewhere = keyThat('k', (k) => !inRanges(k) && hub.some((d) => d.k === k && d.op === 'put'));
    rot(dir, 'k7');
    rot(dir, elsewhere);

    const page = pageOf(hub).filter((d) => inRanges(d.k));
    const repaired = store.replica.repairRanges('docs', 4, [...ranges], page, window, 62);
    expect(repaired.written).toEqual([{ collection: 'docs', key: 'k7' }]);
    expect(repaired.removed).toEqual([{ collection: 'docs', key: phantoms[0] }]);
    expect(store.replica.versionOf('docs', phantoms[1]!)).toBe(41);
    expect(store.replica.versionOf('docs', phantoms[2]!)).toBe(42);
    expect(store.replica.scrub(undefined, Infinity).rotten).toEqual([{ collection: 'docs', key: elsewhere }]);
  });

  it('rewrites single keys (ranges of depth 32) that the scrub found rotten, and the digest, which never moved, is the hub’s', () => {
    const hub = hubAt62();
    const { dir, store } = replicaOf(hub);
    rot(dir, 'k7');
    rot(dir, 'k33');
    const rotten = store.replica.scrub(undefined, Infinity).rotten.map((r) => r.key);
    expect(rotten).toEqual(['k33', 'k7']);
    const docs = pageOf(hub).filter((d) => rotten.includes(d.k));
    const repaired = store.replica.repairRanges('docs', 32, rotten.map(keyPosition), docs, UNBOUNDED, 62);
    expect(repaired.written.map((w) => w.key)).toEqual(['k33', 'k7']);
    expect(repaired.removed).toEqual([]);
    expect(store.replica.scrub(undefined, Infinity).rotten).toEqual([]);
    expect(store.replica.digest('docs')).toBe(digestOf(newest(hub)));
    expect(store.replica.read('docs', 'k33', true)?.value).toEqual({ i: 33 });
  });

  it('writes nothing over a range that is intact, and a lost scoped document comes back with its buckets', () => {
    const hub = hubAt62();
    const { dir, store } = replicaOf(hub);
    const committed = byHand(dir, (db) => {
      const version = (): unknown => db.pragma('data_version', { simple: true });
      const before = version();
      expect(store.replica.repairRanges('docs', 0, [0], pageOf(hub), UNBOUNDED, 62)).toEqual({ written: [], removed: [], bytes: 0 });
      return version() !== before;
    });
    expect(committed).toBe(false);

    const scoped: Change = { ...change(63, 'site-doc', { at: 'a site' }, 'sites'), bk: ['AAAAAAAAAAAAAAAA'] };
    const repaired = store.replica.repairRanges('sites', 32, [keyPosition('site-doc')], [scoped], UNBOUNDED, 63);
    expect(repaired.written).toEqual([{ collection: 'sites', key: 'site-doc' }]);
    const row = byHand(dir, (db) => db.prepare("SELECT buckets, evicted FROM documents WHERE collection = 'sites'").get());
    expect(row).toEqual({ buckets: '["AAAAAAAAAAAAAAAA"]', evicted: 0 });
    expect(store.replica.digest('sites')).toBe(digestOf([scoped]));
  });
});
