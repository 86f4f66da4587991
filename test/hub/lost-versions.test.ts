import { afterEach, describe, expect, it } from 'vitest';
import { HubCore } from '../../hub/core.js';
import { acceptLostReport, type LostReportRules } from '../../hub/lost-reports.js';
import { reapplyLost } from '../../hub/reapply.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { parseHubConfig } from '../../hub/config.js';
import { encodeHlc, type Hlc } from '../../shared/hlc.js';
import type { LostDoc } from '../../shared/messages.js';
import { encodeValue } from '../../shared/value-bytes.js';
import { tempDir } from '../helpers/temp.js';
import { valueOf } from '../helpers/value-bytes.js';

const OLD = 'a'.repeat(32);
const at = (ms: number): string => encodeHlc(1_700_000_000_000 + ms, 0);
const doc = (k: string, ver: number, o: string, c = 'docs', hlc = at(ver)): LostDoc => ({
  c,
  k,
  ver,
  op: 'put',
  v: encodeValue({ k, ver }),
  hlc,
  o,
});

describe('lost versions a restored hub is told of', () => {
  const rules = (lineage = { id: 'b'.repeat(32), fork: 40 }): LostReportRules => ({
    lineage,
    ownsCollection: () => true,
    mayRead: (_agent, c) => c !== 'secret',
    mayWrite: (agent, c) => agent === 'pi-1' && c === 'docs',
    now: 1_700_000_000_000,
  });

  it('are kept only above the fork the hub recorded, within the clock, and as the reporter could have held them', () => {
    const body = {
      id: 1,
      lin: OLD,
      fork: 40,
      docs: [
        doc('mine', 41, 'pi-1'), // its own write of a collection it may write
        doc('theirs', 42, 'pi-2'), // another's, of a collection it may read
        doc('forged', 43, 'pi-2', 'secret'), // another's, of a collection it may not read
        doc('below', 40, 'pi-1'), // not above the fork
        doc('future', 44, 'pi-1', 'docs', at(10 * 60_000)), // ten minutes ahead of the hub's clock
      ],
    };
    const { report, dropped } = acceptLostReport('pi-1', body, rules());
    expect(report.docs.map((d) => d.key)).toEqual(['mine', 'theirs']);
    expect([report.fork, dropped]).toEqual([40, 3]);
    // A device may not claim a write as its own in a collection it may not write.
    expect(acceptLostReport('pi-3', { ...body, docs: [doc('claim', 41, 'pi-3')] }, rules()).report.docs).toEqual([]);
    // A marked restore's report must name the fork the hub recorded.
    expect(acceptLostReport('pi-1', { ...body, fork: 10 }, rules())).toMatchObject({ report: { docs: [] }, dropped: 5 });
    // An unmarked restore's fork cannot be checked: kept at 0, so a reapply is concurrent with anything there.
    expect(acceptLostReport('pi-1', { ...body, lin: 'b'.repeat(32), fork: 12 }, rules()).report.fork).toBe(0);
  });

  describe('reapplied', () => {
    let core: HubCore | undefined;
    afterEach(async () => core?.stop());

    async function hub(): Promise<{ core: HubCore; store: SqliteHubStore }> {
      const store = new SqliteHubStore(tempDir('reapply'));
      const config = parseHubConfig({
        collections: { docs: { conflict: 'reject' } },
        access: { collections: { docs: { read: ['*'], write: ['pi-1', 'pi-2'] } } },
      });
      core = new HubCore({ store, config, publish: () => undefined });
      core.start();
      return { core, store };
    }

    it('commits only versions vouched for by their writer unless told to, never over the writer’s later write, never for a writer that may not', async () => {
      const { core: hubCore, store } = await hub();
      const reapply = (options: { unvouched?: boolean } = {}) =>
        reapplyLost(store, (w) => hubCore.reapply(w), { ...options, mayWrite: (a, c) => hubCore.access.mayWrite(a, c) });
      // Since the restore, pi-1 wrote `again` later than its lost version.
      await hubCore.reapply({
        c: 'docs',
        k: 'again',
        op: 'put',
        v: 'since',
        hlc: at(500) as Hlc,
        origin: 'pi-1',
        base: 0,
        vouchers: ['pi-1'],
      });
      const lost = (agentId: string, docs: LostDoc[]) =>
        store.recordLost({
          agentId,
          lineage: OLD,
          fork: 0,
          docs: docs.map((d) => ({
            collection: d.c,
            key: d.k,
            version: d.ver,
            op: d.op,
            value: valueOf(d),
            hlc: d.hlc as never,
            origin: d.o,
          })),
        });
      await lost('pi-1', [doc('own', 1, 'pi-1'), doc('again', 2, 'pi-1')]);
      await lost('pi-2', [doc('claimed', 3, 'pi-1'), doc('outsider', 4, 'pi-9')]);

      const first = await reapply();
      expect(first).toEqual({ committed: 1, superseded: 1, unvouched: 2 });
      expect(await store.document('docs', 'again')).toMatchObject({ value: 'since' }); // the later write stands
      expect(await store.document('docs', 'claimed')).toBeUndefined(); // only pi-2 vouched for pi-1's write
      // Told to, the operator takes the rest: a writer that may not write the collection is still refused.
      expect(await reapply({ unvouched: true })).toEqual({ committed: 1, rejected: 1 });
      expect(await store.document('docs', 'outsider')).toBeUndefined();
      expect(await reapply({ unvouched: true })).toEqual({});
    });

    it('holds a scoped collection’s versions to the reporter’s scope now: its own only where it may write them, others’ only where it may read them', async () => {
      const store = new SqliteHubStore(tempDir('reapply'));
      const config = parseHubConfig({
        collections: { sites: { scope: { field: 'site', equals: '{label.site}' } } },
        access: { default: { read: ['*'], write: ['*'] } },
      });
      const labels: Record<string, Record<string, string>> = { 'pi-1': { site: 'berlin' }, 'pi-2': { site: 'paris' } };
      const hubCore = (core = new HubCore({ store, config, publish: () => undefined, labelsOf: (id) => labels[id] ?? {} }));
      hubCore.start();
      const reapply = (options: { unvouched?: boolean } = {}) =>
        reapplyLost(store, (w) => hubCore.reapply(w), { ...options, mayWrite: (a, c) => hubCore.access.mayWrite(a, c) });
      // Since the restore, the hub put `moved` in paris, out of pi-1's scope.
      await hubCore.write({ c: 'sites', k: 'moved', op: 'put', v: { site: 'paris' } });
      const site = (k: string, ver: number, o: string, where: string): LostDoc => ({
        ...doc(k, ver, o, 'sites'),
        v: encodeValue({ site: where }),
      });
      await store.recordLost({
        agentId: 'pi-1',
        lineage: OLD,
        fork: 0,
        docs: [
          site('berlin-own', 1, 'pi-1', 'berlin'), // its own, in its scope
          site('paris-own', 2, 'pi-1', 'paris'), // its own, in paris: it may not write there now
          site('moved', 3, 'pi-1', 'berlin'), // its own, of a document now in paris
          site('berlin-theirs', 4, 'pi-2', 'berlin'), // pi-2's, in berlin: pi-1 could read it
          site('paris-theirs', 5, 'pi-2', 'paris'), // pi-2's, in paris: pi-1 could not have held it
        ].map((d) => ({ collection: d.c, key: d.k, version: d.ver, op: d.op, value: valueOf(d), hlc: d.hlc as never, origin: d.o })),
      });

      expect(await reapply()).toEqual({ committed: 1, rejected: 2, unvouched: 2 });
      expect(await store.document('sites', 'berlin-own')).toMatchObject({ origin: 'pi-1' });
      expect(await store.document('sites', 'paris-own')).toBeUndefined();
      expect(await store.document('sites', 'moved')).toMatchObject({ value: { site: 'paris' }, origin: 'hub' });
      const outcomes = await store.lostDocuments({ limit: 10 });
      const refused = outcomes.find((d) => d.key === 'paris-own')?.reapplied;
      expect(refused?.outcome).toBe('rejected');
      expect(refused?.reason).toBe('out_of_scope');

      expect(await reapply({ unvouched: true })).toEqual({ committed: 1, rejected: 1 });
      expect(await store.document('sites', 'berlin-theirs')).toMatchObject({ origin: 'pi-2' });
      expect(await store.document('sites', 'paris-theirs')).toBeUndefined();
    });

    it('runs once at a time: two calls at once commit each version once', async () => {
      const { core: hubCore, store } = await hub();
      await store.recordLost({
        agentId: 'pi-1',
        lineage: OLD,
        fork: 0,
        docs: [1, 2, 3].map((n) => ({
          collection: 'docs',
          key: `k${n}`,
          version: n,
          op: 'put' as const,
          value: n,
          hlc: at(n) as never,
          origin: 'pi-1',
        })),
      });
      const run = () => reapplyLost(store, (w) => hubCore.reapply(w), { mayWrite: () => true });
      const [a, b] = await Promise.all([run(), run()]);
      expect(a).toEqual({ committed: 3 });
      expect(b).toBe(a);
      expect(store.head).toBe(3);
    });
  });
});
