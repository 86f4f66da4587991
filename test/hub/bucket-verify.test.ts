import { afterEach, describe, expect, it } from 'vitest';
import { parseHubConfig } from '../../hub/config.js';
import { HubCore } from '../../hub/core.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { bucketIdOf } from '../../shared/buckets.js';
import { downCodec, upCodec } from '../../shared/codec.js';
import { adjustDigest, documentHash } from '../../shared/digest.js';
import type { Change, DownMessage } from '../../shared/messages.js';
import { topics } from '../../shared/topics.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';
import { asBuffer } from '../../shared/value-bytes.js';

type Body<T extends DownMessage[0]> = Extract<DownMessage, [T, unknown]>[1];

const CONFIG = parseHubConfig({ collections: { sites: { scope: { field: 'site', equals: '{label.site}' } }, notes: {} } });
const LABELS: Record<string, Record<string, string>> = { 'pi-1': { site: 'berlin' }, 'pi-2': { site: 'paris' } };
const BERLIN = bucketIdOf('sites|f|site|berlin');
const PARIS = bucketIdOf('sites|f|site|paris');

const hashOf = (c: Change): number => documentHash(c.c, c.k, c.lsn, c.op === 'del', c.op === 'del' ? null : asBuffer(c.v!));

/** What a replica of one bucket holds after applying these changes in order: `out` takes a document away, a tombstone stays. */
function replicaDigest(changes: readonly Change[]): number {
  const held = new Map<string, Change>();
  for (const change of changes) {
    if (change.op === 'out') held.delete(change.k);
    else held.set(change.k, change);
  }
  return [...held.values()].reduce((digest, doc) => adjustDigest(digest, hashOf(doc)), 0);
}

describe("the hub's side of verifying a device's scope buckets", () => {
  let core: HubCore;
  afterEach(async () => core?.stop());

  function start(): { down: DownMessage[] } {
    const seen = { down: [] as DownMessage[] };
    core = new HubCore({
      store: new SqliteHubStore(tempDir('bucket-verify')),
      config: CONFIG,
      dev: true,
      labelsOf: (agentId) => LABELS[agentId] ?? {},
      publish: (topic, payload) => {
        if (topic === topics.down('pi-1')) seen.down.push(downCodec.decode(payload));
      },
    });
    core.start();
    return seen;
  }
  const say = (message: Parameters<typeof upCodec.encode>[0]): void => core.onUp('pi-1', upCodec.encode(message));
  function answers<T extends DownMessage[0]>(down: DownMessage[], type: T): Array<Body<T>> {
    return down.filter((m) => m[0] === type).map((m) => m[1] as unknown as Body<T>);
  }
  async function nth<T extends DownMessage[0]>(down: DownMessage[], type: T, n: number): Promise<Body<T>> {
    const found: unknown = await waitFor(`${type} answer ${n}`, (): unknown => answers(down, type)[n]);
    return found as Body<T>;
  }
  async function online(seen: { down: DownMessage[] }): Promise<void> {
    say(['hello', { s: '0000000000000001' }]);
    const scope = await nth(seen.down, 'scope', 0);
    expect(scope.bs.map(([b]) => b)).toEqual([BERLIN]);
  }

  it("a bucket's change sets carry the bucket's digest after their last change, a document that left it included", async () => {
    const seen = start();
    await online(seen);
    await core.write({ c: 'sites', k: 'a', op: 'put', v: { site: 'berlin', n: 1 } });
    await core.write({ c: 'sites', k: 'b', op: 'put', v: { site: 'berlin', n: 2 } });
    await core.write({ c: 'sites', k: 'a', op: 'del' });
    await core.write({ c: 'sites', k: 'b', op: 'put', v: { site: 'paris' } }); // leaves berlin: `out`
    await core.write({ c: 'sites', k: 'p', op: 'put', v: { site: 'paris' } }); // not berlin's: not sent
    await core.write({ c: 'notes', k: 'n', op: 'put', v: 1 });
    await waitFor('four change sets', () => answers(seen.down, 'changes').length === 4);
    const sets = answers(seen.down, 'changes');
    const applied: Change[] = [];
    for (const set of sets) {
      expect(set.b).toBe(BERLIN);
      applied.push(...set.changes);
      expect(set.dg).toBe(replicaDigest(applied));
    }
    expect(sets.at(-1)!.changes[0]).toMatchObject({ k: 'b', op: 'out' });
    expect((await core.store.bucketDigests([BERLIN])).get(BERLIN)!.digest).toBe(replicaDigest(applied));
  });

  it("a bucket's page carries its digest only when it reaches the bucket's head", async () => {
    const seen = start();
    await online(seen);
    await core.write({ c: 'sites', k: 'a', op: 'put', v: { site: 'berlin', n: 1 } });
    say(['pull', { id: 1, from: 0, b: BERLIN }]);
    const snapshot = await nth(seen.down, 'snapshot', 0);
    expect(snapshot).not.toHaveProperty('dg');
    // Nothing after the snapshot yet: an empty page at the head compares what the snapshot brought.
    say(['pull', { id: 2, from: snapshot.lsn, b: BERLIN }]);
    const empty = await nth(seen.down, 'page', 0);
    expect([empty.changes, empty.dg]).toEqual([[], { sites: replicaDigest(snapshot.docs) }]);
    for (const n of [2, 3, 4]) await core.write({ c: 'sites', k: `k${n}`, op: 'put', v: { site: 'berlin', n } });
    say(['pull', { id: 3, from: snapshot.lsn, b: BERLIN, limit: 2 }]);
    const partial = await nth(seen.down, 'page', 1);
    expect([partial.more, partial.changes.length]).toEqual([true, 2]);
    expect(partial).not.toHaveProperty('dg');
    say(['pull', { id: 4, from: partial.to, b: BERLIN, limit: 2 }]);
    const last = await nth(seen.down, 'page', 2);
    expect([last.more, last.changes.length]).toEqual([false, 1]);
    expect(last.dg).toEqual({ sites: replicaDigest([...snapshot.docs, ...partial.changes, ...last.changes]) });
  });

  it("answers a status asking for buckets' digests: those it holds whose head is at or below the LSN given", async () => {
    const seen = start();
    await online(seen);
    await core.write({ c: 'sites', k: 'a', op: 'put', v: { site: 'berlin', n: 1 } });
    await core.write({ c: 'sites', k: 'p', op: 'put', v: { site: 'paris' } });
    const head = core.store.head;
    const berlin = (await core.store.bucketDigests([BERLIN])).get(BERLIN)!;
    expect(berlin.head).toBe(1);
    // PARIS is not pi-1's: left out, as is BERLIN where it moved on past the LSN given.
    say(['status', { applied: { notes: 0 }, outbox: 0, vb: { [BERLIN]: head, [PARIS]: head } }]);
    expect((await nth(seen.down, 'digests', 0)).bs).toEqual([[BERLIN, head, berlin.digest]]);
    say(['status', { applied: { notes: 0 }, outbox: 0, vb: { [BERLIN]: 0 } }]);
    expect(await nth(seen.down, 'digests', 1)).toMatchObject({ ds: [], bs: [] });
    // A status asking of collections only has no `bs`.
    say(['status', { applied: { notes: 0 }, outbox: 0, v: { notes: 0 } }]);
    expect(await nth(seen.down, 'digests', 2)).not.toHaveProperty('bs');
  });

  it('answers range digests and a refetch of one bucket it holds, echoing it; refuses a bucket it does not hold', async () => {
    const seen = start();
    await online(seen);
    for (let i = 0; i < 30; i++) await core.write({ c: 'sites', k: `k${i}`, op: 'put', v: { site: i % 3 === 0 ? 'berlin' : 'paris' } });
    say(['ranges', { id: 1, c: 'sites', d: 0, ps: [0], bits: 2, b: BERLIN }]);
    const sums = await nth(seen.down, 'rangesums', 0);
    expect(sums.b).toBe(BERLIN);
    expect(sums.ns[0]!.reduce((a, b) => a + b, 0)).toBe(10);
    const sum = sums.ds[0]!.reduce((d, h) => adjustDigest(d, h), 0);
    expect(sum).toBe((await core.store.bucketDigests([BERLIN])).get(BERLIN)!.digest);
    say(['refetch', { id: 2, c: 'sites', d: 0, ps: [0], b: BERLIN }]);
    const page = await nth(seen.down, 'refetched', 0);
    expect([page.b, page.docs.length, page.next]).toEqual([BERLIN, 10, undefined]);
    expect(page.docs.every((d) => d.bk?.includes(BERLIN))).toBe(true);

    const refused = (id: number): Promise<unknown> =>
      waitFor(`refusal ${id}`, () => answers(seen.down, 'error').find((e) => e.message.includes(`bucket ${PARIS}`)));
    say(['ranges', { id: 3, c: 'sites', d: 0, ps: [0], bits: 2, b: PARIS }]);
    await refused(3);
    say(['refetch', { id: 4, c: 'notes', d: 0, ps: [0], b: BERLIN }]); // a bucket of another collection
    await waitFor('refusal of a bucket not of notes', () => answers(seen.down, 'error').some((e) => e.message.includes('not of notes')));
    say(['ranges', { id: 5, c: 'sites', d: 0, ps: [0], bits: 2 }]); // scoped, without a bucket: refused as before
    await waitFor('refusal of sites whole', () => answers(seen.down, 'error').some((e) => e.message.includes('collection sites')));
    expect(answers(seen.down, 'rangesums')).toHaveLength(1);
    expect(answers(seen.down, 'refetched')).toHaveLength(1);
  });
});
