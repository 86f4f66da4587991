import { afterEach, describe, expect, it } from 'vitest';
import { parseHubConfig } from '../../hub/config.js';
import { HubCore } from '../../hub/core.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { broadcastCodec, downCodec, upCodec } from '../../shared/codec.js';
import { documentHash, RangeTally } from '../../shared/digest.js';
import type { Change, DownMessage } from '../../shared/messages.js';
import { topics } from '../../shared/topics.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';
import { asBuffer } from '../../shared/value-bytes.js';

type Body<T extends DownMessage[0]> = Extract<DownMessage, [T, unknown]>[1];

const CONFIG = parseHubConfig({ collections: { sites: { scope: { key: '{agent}/' } } } });

/** The digest of documents as a replica holding exactly these changes computes it. */
function digestOf(changes: readonly Change[]): number {
  const tally = new RangeTally(0, [0], 0);
  for (const c of changes) tally.add(c.k, documentHash(c.c, c.k, c.lsn, c.op === 'del', c.v === undefined ? null : asBuffer(c.v)));
  return tally.digests[0]![0]!;
}

describe("the hub's side of verifying a device's copy", () => {
  let core: HubCore;
  afterEach(async () => core?.stop());

  function start(): { down: DownMessage[]; changeSets: Array<{ c: string; dg?: number; changes: Change[] }> } {
    const seen = { down: [] as DownMessage[], changeSets: [] as Array<{ c: string; dg?: number; changes: Change[] }> };
    core = new HubCore({
      store: new SqliteHubStore(tempDir('verify-answers')),
      config: CONFIG,
      dev: true,
      publish: (topic, payload) => {
        if (topic === topics.down('pi-1')) seen.down.push(downCodec.decode(payload));
        if (topic.startsWith(topics.collection(''))) {
          const message = broadcastCodec.decode(payload);
          if (message[0] === 'changes') seen.changeSets.push(message[1]);
        }
      },
    });
    core.start();
    return seen;
  }
  const say = (message: Parameters<typeof upCodec.encode>[0]): void => core.onUp('pi-1', upCodec.encode(message));
  function answers<T extends DownMessage[0]>(down: DownMessage[], type: T): Array<Body<T>> {
    return down.filter((m) => m[0] === type).map((m) => m[1] as unknown as Body<T>);
  }
  async function first<T extends DownMessage[0]>(down: DownMessage[], type: T): Promise<Body<T>> {
    const found: unknown = await waitFor(`a ${type} answer`, (): unknown => answers(down, type)[0]);
    return found as Body<T>;
  }

  it('change sets and pages carry the digest a replica of the same changes computes', async () => {
    const seen = start();
    await core.write({ c: 'notes', k: 'a', op: 'put', v: { n: 1 } });
    await core.write({ c: 'notes', k: 'b', op: 'put', v: { n: 2 } });
    await core.write({ c: 'notes', k: 'a', op: 'del' });
    await waitFor('three change sets', () => seen.changeSets.length === 3);
    const applied = new Map<string, Change>();
    for (const set of seen.changeSets) {
      for (const change of set.changes) applied.set(change.k, change);
      expect(set.dg).toBe(digestOf([...applied.values()]));
    }
    say(['pull', { id: 7, from: 0 }]);
    const page = await first(seen.down, 'page');
    expect(page.dg).toEqual({ notes: digestOf([...applied.values()]) });
  });

  it('answers a status that asks to verify with its digest at the LSN it names', async () => {
    const seen = start();
    await core.write({ c: 'notes', k: 'a', op: 'put', v: 1 });
    await core.write({ c: 'notes', k: 'b', op: 'put', v: 2 });
    await core.write({ c: 'notes', k: 'c', op: 'put', v: 3 });
    await waitFor('three change sets', () => seen.changeSets.length === 3);
    say(['status', { applied: { notes: 2 }, outbox: 0, v: { notes: 2 } }]);
    const digests = await first(seen.down, 'digests');
    const firstTwo = seen.changeSets.slice(0, 2).flatMap((s) => s.changes);
    expect(digests.ds).toEqual([['notes', 2, digestOf(firstTwo)]]);
    // A status that does not ask gets no answer.
    say(['status', { applied: { notes: 3 }, outbox: 0 }]);
    await waitFor('the status taken', () => core.replication.appliedBy('pi-1').notes === 3);
    expect(answers(seen.down, 'digests')).toHaveLength(1);
  });

  it('answers range digests and a range refetch; refuses a scoped collection and too many sub-ranges', async () => {
    const seen = start();
    for (let i = 0; i < 50; i++) await core.write({ c: 'notes', k: `k${i}`, op: 'put', v: i });
    say(['ranges', { id: 1, c: 'notes', d: 0, ps: [0], bits: 4 }]);
    const sums = await first(seen.down, 'rangesums');
    expect(sums.ns[0]!.reduce((a: number, b: number) => a + b, 0)).toBe(50);
    const documents = (await core.store.readDocuments(['notes'], undefined, 1000, 1 << 30)).docs;
    const tally = new RangeTally(0, [0], 4);
    for (const d of documents) tally.add(d.k, documentHash(d.c, d.k, d.lsn, d.op === 'del', d.v === undefined ? null : asBuffer(d.v)));
    expect(sums.ds).toEqual(tally.digests);
    // The documents of one sub-range: exactly those whose key falls in it.
    const busiest = sums.ns[0]!.indexOf(Math.max(...sums.ns[0]!));
    say(['refetch', { id: 2, c: 'notes', d: 4, ps: [busiest] }]);
    const page = await first(seen.down, 'refetched');
    expect(page.docs).toHaveLength(sums.ns[0]![busiest]!);
    expect(page.next).toBeUndefined();

    say(['ranges', { id: 3, c: 'sites', d: 0, ps: [0], bits: 8 }]);
    await waitFor('a refusal for a scoped collection', () =>
      answers(seen.down, 'error').some((e) => e.code === 'OUTPOST_INVALID_REQUEST' && e.message.includes('sites')),
    );
    say(['ranges', { id: 4, c: 'notes', d: 8, ps: Array.from({ length: 100 }, (_, i) => i), bits: 8 }]);
    await waitFor('a refusal of 25,600 sub-ranges', () => answers(seen.down, 'error').some((e) => e.message.includes('at most')));
  });
});
