import { afterEach, describe, expect, it } from 'vitest';
import { unpackAck } from '../../shared/acks.js';
import { encodeHlc, HybridClock } from '../../shared/hlc.js';
import type { OpResult } from '../../shared/messages.js';
import { CollectionPolicies, parseHubConfig, scopeRules } from '../../hub/config.js';
import { defaultIngestOptions, Ingestor, type IngestOutput } from '../../hub/ingest.js';
import { scopeView } from '../../hub/scope-rules.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { tempDir } from '../helpers/temp.js';
import { withBytes, type PlainWriteOp } from '../helpers/value-bytes.js';

const INC = 'c'.repeat(32);
let t = Date.now() + 10_000; // later than the hub writes below, within the allowed skew
const hlc = (): string => encodeHlc(t++, 0);
const results = (out: IngestOutput): OpResult[] => {
  const reply = out.replies[0]!;
  if (reply.message[0] !== 'ack') throw new Error(`expected an ack, got ${reply.message[0]}`);
  return unpackAck(reply.message[1]);
};

describe('writes to scoped collections', () => {
  let store: SqliteHubStore;
  afterEach(() => store?.db.close());

  it("a device's write outside its scope, or moving a document out of it, is refused as out_of_scope and never committed; hub writes are not limited", async () => {
    store = new SqliteHubStore(tempDir('scope-writes'));
    const config = parseHubConfig({
      collections: {
        config: { scope: { key: '{agent}/' } },
        sites: { scope: { field: 'site', equals: '{label.site}' }, conflict: 'merge' },
      },
    });
    const labels: Record<string, Record<string, string>> = { 'pi-1': { site: 'berlin' } };
    const ingestor = new Ingestor(store, new HybridClock(), new CollectionPolicies(config), {
      ...defaultIngestOptions,
      scopes: scopeView(scopeRules(config.collections), config.access.groups, (id) => labels[id] ?? {}),
    });
    const hubWrite = async (c: string, k: string, v: unknown) =>
      (await ingestor.ingest([{ kind: 'hub', write: { c, k, op: 'put', v } }])).hubResults[0];
    expect(await hubWrite('sites', 'paris-1', { site: 'paris', n: 1 })).toMatchObject({ outcome: 'committed', lsn: 1 });
    expect(await hubWrite('sites', 'berlin-1', { site: 'berlin', n: 1 })).toMatchObject({ outcome: 'committed', lsn: 2 });
    // Hub writes go anywhere, and may put a document in several scopes.
    expect(await hubWrite('config', 'pi-2/limits', { max: 2 })).toMatchObject({ outcome: 'committed', lsn: 3 });
    expect(await hubWrite('sites', 'shared-1', { site: ['berlin', 'paris'] })).toMatchObject({ outcome: 'committed', lsn: 4 });
    let seq = 0;
    const device = async (op: Omit<PlainWriteOp, 'seq' | 'hlc'>): Promise<OpResult> =>
      results(
        await ingestor.ingest([
          { kind: 'batch', agentId: 'pi-1', batch: { inc: INC, ops: [withBytes({ ...op, seq: ++seq, hlc: hlc() })] } },
        ]),
      )[0]!;
    // In scope: its own config, a berlin order (new or existing, put or patch or delete).
    expect(await device({ c: 'config', k: 'pi-1/limits', op: 'put', v: { max: 1 } })).toMatchObject({ outcome: 'committed' });
    expect(await device({ c: 'sites', k: 'berlin-2', op: 'put', v: { site: 'berlin' } })).toMatchObject({ outcome: 'committed' });
    expect(await device({ c: 'sites', k: 'berlin-1', op: 'patch', v: { n: 2 } })).toMatchObject({ outcome: 'committed' });
    const head = store.head;
    // Outside: another device's config, a paris order (read, overwritten, patched or deleted), a
    // new document it could not hold, and writes that would move a berlin order out of berlin.
    const outside: Array<Omit<PlainWriteOp, 'seq' | 'hlc'>> = [
      { c: 'config', k: 'pi-2/limits', op: 'put', v: { max: 99 } },
      { c: 'config', k: 'pi-2/new', op: 'put', v: {} },
      { c: 'sites', k: 'paris-1', op: 'put', v: { site: 'berlin' } },
      { c: 'sites', k: 'paris-1', op: 'patch', v: { n: 9 } },
      { c: 'sites', k: 'paris-1', op: 'del' },
      { c: 'sites', k: 'rome-1', op: 'put', v: { site: 'rome' } },
      { c: 'sites', k: 'berlin-1', op: 'put', v: { site: 'paris' } },
      { c: 'sites', k: 'berlin-1', op: 'patch', v: { site: 'rome' } },
      { c: 'sites', k: 'berlin-2', op: 'put', v: { other: 1 } },
      // Deleting another device's absent document: refused by its key, as an existing one is
      // (whether it exists cannot be probed), and no tombstone is left to block its owner.
      { c: 'config', k: 'pi-2/absent', op: 'del' },
      { c: 'sites', k: 'rome-absent', op: 'del' },
      // Pushing a document into other devices' scopes, as a list or by moving it.
      { c: 'sites', k: 'berlin-3', op: 'put', v: { site: ['berlin', 'paris'] } },
      { c: 'sites', k: 'berlin-1', op: 'patch', v: { site: ['berlin', 'rome'] } },
    ];
    for (const op of outside) {
      const result = await device(op);
      expect(result, JSON.stringify(op)).toMatchObject({ outcome: 'rejected', reason: 'out_of_scope' });
      expect(result.detail).toMatch(/outside agent pi-1's scope/);
    }
    expect(store.head).toBe(head); // nothing committed
    expect(await store.document('sites', 'paris-1')).toMatchObject({ value: { site: 'paris', n: 1 }, version: 1 });
    // Deleting its own document stays in scope (the tombstone is where the document was); so
    // does deleting an absent key its key rule gives it.
    expect(await device({ c: 'sites', k: 'berlin-2', op: 'del' })).toMatchObject({ outcome: 'committed' });
    expect(await device({ c: 'config', k: 'pi-1/absent', op: 'del' })).toMatchObject({ outcome: 'committed' });
    // A document already in other scopes too may be edited in place, keeping them.
    expect(await device({ c: 'sites', k: 'shared-1', op: 'patch', v: { n: 1 } })).toMatchObject({ outcome: 'committed' });
    expect(await device({ c: 'sites', k: 'shared-1', op: 'patch', v: { site: ['berlin', 'paris', 'rome'] } })).toMatchObject({
      reason: 'out_of_scope',
    });
    // An unscoped collection is not limited; nor is a relabelled device's new site.
    expect(await device({ c: 'logs', k: 'anything', op: 'put', v: 1 })).toMatchObject({ outcome: 'committed' });
    labels['pi-1'] = { site: 'paris' };
    expect(await device({ c: 'sites', k: 'paris-1', op: 'patch', v: { n: 3 } })).toMatchObject({ outcome: 'committed' });
    expect(await device({ c: 'sites', k: 'berlin-1', op: 'patch', v: { n: 3 } })).toMatchObject({ reason: 'out_of_scope' });
  });

  it('a put where a deleted document it could not read lies answers as on an absent key: the conflict answer tells nothing of it', async () => {
    store = new SqliteHubStore(tempDir('scope-writes'));
    const config = parseHubConfig({
      collections: {
        sites: { scope: { field: 'site', equals: '{label.site}' } },
        orders: { scope: { field: 'site', equals: '{label.site}' }, conflict: 'reject' },
      },
    });
    const labels: Record<string, Record<string, string>> = {
      'pi-1': { site: 'berlin' },
      'pi-2': { site: 'paris' },
      'pi-3': { site: 'berlin' },
    };
    const ingestor = new Ingestor(store, new HybridClock(), new CollectionPolicies(config), {
      ...defaultIngestOptions,
      scopes: scopeView(scopeRules(config.collections), config.access.groups, (id) => labels[id] ?? {}),
    });
    const seqs: Record<string, number> = {};
    const device = async (agentId: string, op: Omit<PlainWriteOp, 'seq'>): Promise<OpResult> => {
      seqs[agentId] = (seqs[agentId] ?? 0) + 1;
      const batch = { inc: INC, ops: [withBytes({ ...op, seq: seqs[agentId] })] };
      return results(await ingestor.ingest([{ kind: 'batch', agentId, batch }]))[0]!;
    };
    const early = hlc();
    for (const c of ['sites', 'orders']) {
      // pi-2 (paris) writes and deletes a paris document; pi-3 (berlin) a berlin one.
      expect(await device('pi-2', { c, k: 'paris-gone', op: 'put', v: { site: 'paris' }, hlc: hlc() })).toMatchObject({
        outcome: 'committed',
      });
      expect(await device('pi-2', { c, k: 'paris-gone', op: 'del', hlc: hlc() })).toMatchObject({ outcome: 'committed' });
      expect(await device('pi-3', { c, k: 'berlin-gone', op: 'put', v: { site: 'berlin' }, hlc: hlc() })).toMatchObject({
        outcome: 'committed',
      });
      expect(await device('pi-3', { c, k: 'berlin-gone', op: 'del', hlc: hlc() })).toMatchObject({ outcome: 'committed' });
    }
    for (const c of ['sites', 'orders']) {
      // pi-1 (berlin) puts a berlin document, with a timestamp older than the deletes, on a key
      // that never held one and on the key of paris's tombstone: the same answer for both.
      const absent = await device('pi-1', { c, k: 'never-was', op: 'put', v: { site: 'berlin' }, hlc: early });
      const onTombstone = await device('pi-1', { c, k: 'paris-gone', op: 'put', v: { site: 'berlin' }, hlc: early });
      expect(absent, c).toMatchObject({ outcome: 'committed' });
      expect(onTombstone, c).toMatchObject({ outcome: 'committed' });
      expect(JSON.stringify(onTombstone), c).not.toMatch(/pi-2/);
      expect(await store.document(c, 'paris-gone'), c).toMatchObject({ value: { site: 'berlin' }, origin: 'pi-1' });
      // The hub keeps the deletion it replaced on record.
      expect((await store.conflicts({ collection: c, key: 'paris-gone', limit: 5 })).map((r) => [r.reason, r.loser.origin])).toEqual([
        ['overwritten', 'pi-2'],
      ]);
      // A tombstone it could read (berlin's, which it was sent) still weighs as the document did.
      const readable = await device('pi-1', { c, k: 'berlin-gone', op: 'put', v: { site: 'berlin' }, hlc: early });
      expect(readable, c).toMatchObject({ outcome: 'conflict' });
      expect(readable.detail, c).toMatch(/pi-3/);
    }
    // Later than the delete, the put simply wins under last-writer-wins, as on an absent key.
    const late = hlc();
    expect(await device('pi-1', { c: 'sites', k: 'berlin-gone', op: 'put', v: { site: 'berlin' }, hlc: late })).toMatchObject({
      outcome: 'committed',
    });
  });
});
