import { afterEach, describe, expect, it } from 'vitest';
import { encodeHlc, HybridClock } from '../../shared/hlc.js';
import { unpackAck } from '../../shared/acks.js';
import type { OpResult, PageMessage, PullMessage, SnapshotMessage, WriteOp } from '../../shared/messages.js';
import { CollectionPolicies, DEFAULT_HUB_CONFIG } from '../../hub/config.js';
import { defaultIngestOptions, Ingestor, type IngestOutput } from '../../hub/ingest.js';
import { answerPull } from '../../hub/pull.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { encodeValue } from '../../shared/value-bytes.js';
import type { JsonValue } from '../../shared/values.js';
import { tempDir } from '../helpers/temp.js';
import { withValue } from '../helpers/value-bytes.js';

const INC_A = 'a'.repeat(32);
const INC_B = 'b'.repeat(32);
let t = Date.now();
const hlc = (): string => encodeHlc(t++, 0);
/** Every op's result in an ack reply, committed runs unpacked. */
const results = (reply: IngestOutput['replies'][number]): OpResult[] => {
  if (reply.message[0] !== 'ack') throw new Error(`expected an ack, got ${reply.message[0]}`);
  return unpackAck(reply.message[1]);
};
const put = (seq: number, k: string, v: JsonValue, c = 'docs'): WriteOp => ({ seq, c, k, op: 'put', v: encodeValue(v), hlc: hlc() });

describe('ingest', () => {
  let store: SqliteHubStore;
  afterEach(() => store?.db.close());

  function setup(dir = tempDir('ingest')): { ingestor: Ingestor; dir: string } {
    store = new SqliteHubStore(dir);
    return { ingestor: new Ingestor(store, new HybridClock(), new CollectionPolicies(DEFAULT_HUB_CONFIG), defaultIngestOptions), dir };
  }

  it('commits ops in order with gap-free LSNs and acks after', async () => {
    const { ingestor } = setup();
    const out = await ingestor.ingest([
      { kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: [put(1, 'x', 1), put(2, 'y', 2), put(3, 'x', 3)] } },
    ]);
    expect(out.replies).toEqual([
      { agentId: 'pi-a', message: ['ack', expect.objectContaining({ inc: INC_A, results: [], runs: [[1, 3, 1]] })] },
    ]);
    expect(results(out.replies[0]!)).toEqual([
      { seq: 1, outcome: 'committed', lsn: 1 },
      { seq: 2, outcome: 'committed', lsn: 2 },
      { seq: 3, outcome: 'committed', lsn: 3 },
    ]);
    expect(store.db.head).toBe(3);
    expect(store.db.document('docs', 'x')).toMatchObject({ value: 3, version: 3 });
    expect(out.changeSets).toHaveLength(1);
    expect(out.changeSets[0]![1]).toMatchObject({ c: 'docs', prev: 0, changes: [{ lsn: 1 }, { lsn: 2 }, { lsn: 3 }] });
  });

  it('re-acks a duplicate with its original outcome and never applies it twice', async () => {
    const { ingestor } = setup();
    const ops = [put(1, 'x', 'first'), put(2, 'y', 2)];
    await ingestor.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops } }]);
    const again = await ingestor.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: [...ops, put(3, 'z', 3)] } }]);
    expect({ results: results(again.replies[0]!) }).toMatchObject({
      results: [
        { seq: 1, outcome: 'committed', lsn: 1, dup: true },
        { seq: 2, outcome: 'committed', lsn: 2, dup: true },
        { seq: 3, outcome: 'committed', lsn: 3 },
      ],
    });
    expect(store.db.head).toBe(3);
    expect(store.db.countCommitted('pi-a', INC_A, 1)).toBe(1);
    expect(again.changeSets[0]![1].changes.map((c) => c.lsn)).toEqual([3]);
  });

  it('re-acks an op whose outcome retention removed as a plain duplicate, and never applies it again', async () => {
    const { ingestor } = setup();
    const ops = [put(1, 'x', 'first'), put(2, 'y', 2), { ...put(3, 'bad', 3), c: 'Bad Name' }];
    await ingestor.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops } }]);
    await ingestor.ingest([{ kind: 'hub', write: { c: 'docs', k: 'later', op: 'put', v: 1 } }]);
    expect(store.db.outcome('pi-a', INC_A, 3)?.result.outcome).toBe('rejected');
    expect(store.db.prune({ maxAgeMs: 1, maxEntries: 0 }, Date.now() + 1000)).toBe(3); // everything is older than 1 ms
    expect(store.db.outcome('pi-a', INC_A, 3)).toBeUndefined(); // the rejection went too
    const again = await ingestor.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: [...ops, put(4, 'z', 4)] } }]);
    expect(results(again.replies[0]!)).toEqual([
      { seq: 1, outcome: 'duplicate' },
      { seq: 2, outcome: 'duplicate' },
      { seq: 3, outcome: 'duplicate' },
      { seq: 4, outcome: 'committed', lsn: 4 },
    ]);
    expect(store.db.document('docs', 'x')).toMatchObject({ value: 'first', version: 1 });
    expect(store.db.head).toBe(4);
  });

  it('asks for a resync at the first missing seq and commits nothing past the gap', async () => {
    const { ingestor } = setup();
    await ingestor.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: [put(1, 'x', 1)] } }]);
    const out = await ingestor.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: [put(3, 'y', 3), put(4, 'z', 4)] } }]);
    expect(out.replies.map((r) => r.message)).toEqual([['resync', expect.objectContaining({ inc: INC_A, expected: 2 })]]);
    expect(store.db.head).toBe(1);
  });

  it('keeps sequence spaces apart per agent and per incarnation', async () => {
    const { ingestor } = setup();
    const out = await ingestor.ingest([
      { kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: [put(1, 'a1', 1)] } },
      { kind: 'batch', agentId: 'pi-b', batch: { inc: INC_A, ops: [put(1, 'b1', 1)] } },
      { kind: 'batch', agentId: 'pi-a', batch: { inc: INC_B, ops: [put(1, 'a1-reinstalled', 1)] } },
    ]);
    expect(out.replies.map((r) => r.message[0])).toEqual(['ack', 'ack', 'ack']);
    expect(store.db.head).toBe(3);
  });

  it('rejects an invalid op with a reason and goes on with the next', async () => {
    const { ingestor } = setup();
    const future = encodeHlc(Date.now() + 3_600_000, 0);
    const out = await ingestor.ingest([
      {
        kind: 'batch',
        agentId: 'pi-a',
        batch: {
          inc: INC_A,
          ops: [
            put(1, 'x', 'x'.repeat(300 * 1024)),
            { seq: 2, c: 'docs', k: 'y', op: 'put', v: encodeValue(1), hlc: future },
            { seq: 3, c: 'docs', k: 'z', op: 'patch', v: encodeValue('nope'), hlc: hlc() },
            put(4, 'ok', true),
          ],
        },
      },
    ]);
    expect({ results: results(out.replies[0]!) }).toMatchObject({
      results: [
        { seq: 1, outcome: 'rejected', reason: 'too_large' },
        { seq: 2, outcome: 'rejected', reason: 'clock_skew' },
        { seq: 3, outcome: 'rejected', reason: 'invalid_value' },
        { seq: 4, outcome: 'committed', lsn: 1 },
      ],
    });
    // Rejected ops are processed: they are not asked for again.
    expect(store.db.lastSeq('pi-a', INC_A)).toBe(4);
    expect(store.db.outcome('pi-a', INC_A, 2)?.result).toMatchObject({ outcome: 'rejected', reason: 'clock_skew' });
  });

  it('resolves concurrent writes last-writer-wins by HLC, reporting the loser as a conflict', async () => {
    const { ingestor } = setup();
    const older = encodeHlc(Date.now() - 10_000, 0);
    const newer = encodeHlc(Date.now() - 5_000, 0);
    await ingestor.ingest([
      {
        kind: 'batch',
        agentId: 'pi-a',
        batch: { inc: INC_A, ops: [{ seq: 1, c: 'docs', k: 'k', op: 'put', v: encodeValue('from a'), hlc: newer }] },
      },
    ]);
    const out = await ingestor.ingest([
      {
        kind: 'batch',
        agentId: 'pi-b',
        batch: { inc: INC_B, ops: [{ seq: 1, c: 'docs', k: 'k', op: 'put', v: encodeValue('from b'), hlc: older }] },
      },
    ]);
    expect({ results: results(out.replies[0]!) }).toMatchObject({ results: [{ seq: 1, outcome: 'conflict', lsn: 1 }] });
    expect(store.db.document('docs', 'k')).toMatchObject({ value: 'from a', origin: 'pi-a' });
    expect(out.changeSets).toEqual([]);
  });

  it('merges patches into the current document and logs the full result', async () => {
    const { ingestor } = setup();
    const out = await ingestor.ingest([
      {
        kind: 'batch',
        agentId: 'pi-a',
        batch: {
          inc: INC_A,
          ops: [
            put(1, 'k', { a: 1, b: 2 }),
            { seq: 2, c: 'docs', k: 'k', op: 'patch', v: encodeValue({ b: null, c: 3 }), hlc: hlc() },
            { seq: 3, c: 'docs', k: 'gone', op: 'del', hlc: hlc() },
          ],
        },
      },
    ]);
    expect(out.changeSets[0]![1].changes.map(withValue)).toMatchObject([
      { lsn: 1, op: 'put', v: { a: 1, b: 2 } },
      { lsn: 2, op: 'put', v: { a: 1, c: 3 } },
      { lsn: 3, op: 'del' },
    ]);
  });

  it('group-commits many agents in one transaction and chains change sets by prev', async () => {
    const { ingestor } = setup();
    await ingestor.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: [put(1, 'x', 1, 'one'), put(2, 'x', 1, 'two')] } }]);
    const out = await ingestor.ingest([
      { kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: [put(3, 'y', 1, 'one')] } },
      { kind: 'batch', agentId: 'pi-b', batch: { inc: INC_B, ops: [put(1, 'z', 1, 'one'), put(2, 'z', 1, 'two')] } },
    ]);
    const byCollection = Object.fromEntries(out.changeSets.map(([, s]) => [s.c, s]));
    expect(byCollection.one).toMatchObject({ prev: 1, changes: [{ lsn: 3 }, { lsn: 4 }] });
    expect(byCollection.two).toMatchObject({ prev: 2, changes: [{ lsn: 5 }] });
  });

  it('splits a large commit into change sets that chain', async () => {
    store = new SqliteHubStore(tempDir('ingest'));
    const ingestor = new Ingestor(store, new HybridClock(), new CollectionPolicies(DEFAULT_HUB_CONFIG), {
      ...defaultIngestOptions,
      maxChangeSetBytes: 1000,
    });
    const ops = Array.from({ length: 30 }, (_, i) => put(i + 1, `k${i}`, 'v'.repeat(100)));
    const sets = (await ingestor.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops } }])).changeSets.map(([, s]) => s);
    expect(sets.length).toBeGreaterThan(3);
    for (let i = 1; i < sets.length; i++) expect(sets[i]!.prev).toBe(sets[i - 1]!.changes.at(-1)!.lsn);
    expect(sets.flatMap((s) => s.changes).map((c) => c.lsn)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  });

  it('survives a restart: lastSeq, outcomes and the head come back from disk', async () => {
    const { ingestor, dir } = setup();
    const second = put(2, 'y', 2);
    await ingestor.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: [put(1, 'x', 1), second] } }]);
    store.db.close();
    const reopened = setup(dir).ingestor;
    expect(store.db.head).toBe(2);
    const out = await reopened.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: [second, put(3, 'z', 3)] } }]);
    expect({ results: results(out.replies[0]!) }).toMatchObject({
      results: [
        { seq: 2, dup: true, lsn: 2 },
        { seq: 3, lsn: 3 },
      ],
    });
  });

  it('answers pulls in pages that are complete up to `to`', async () => {
    const { ingestor } = setup();
    const ops = Array.from({ length: 25 }, (_, i) => put(i + 1, `k${i}`, i, i % 2 ? 'odd' : 'even'));
    await ingestor.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops } }]);
    const clock = new HybridClock();
    const pageOf = async (pull: PullMessage[1], maxBytes = 1 << 20): Promise<PageMessage[1]> =>
      ((await answerPull(store, clock, pull, maxBytes)) as PageMessage)[1];
    const first = await pageOf({ id: 1, from: 0, limit: 10 });
    expect(first).toMatchObject({ from: 0, to: 10, more: true });
    const last = await pageOf({ id: 1, from: 20, limit: 10 });
    expect(last).toMatchObject({ from: 20, to: 25, more: false });
    expect(last.changes.map((c) => c.lsn)).toEqual([21, 22, 23, 24, 25]);
    const odd = await pageOf({ id: 1, from: 0, cs: ['odd'] });
    expect(odd.changes.every((c) => c.c === 'odd')).toBe(true);
    expect(odd).toMatchObject({ to: 25, more: false });
    const bySize = await pageOf({ id: 1, from: 0 }, 100);
    expect(bySize.changes.length).toBeLessThan(25);
    expect(bySize).toMatchObject({ more: true, to: bySize.changes.at(-1)!.lsn });
  });

  it('prunes the log by count and by age, and keeps the head across a restart', async () => {
    const { ingestor, dir } = setup();
    await ingestor.ingest([
      { kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: Array.from({ length: 30 }, (_, i) => put(i + 1, `k${i}`, i)) } },
    ]);
    expect(store.db.prune({ maxAgeMs: 0, maxEntries: 10 })).toBe(20);
    expect(store.db.readLog(0, undefined, 100, 1 << 20).changes.map((c) => c.lsn)[0]).toBe(21);
    expect(store.db.prune({ maxAgeMs: 1, maxEntries: 0 }, Date.now() + 1000)).toBe(30); // everything is older than 1 ms
    store.db.close();
    setup(dir);
    expect(store.db.head).toBe(30);
    expect(store.db.prunedThrough).toBe(30);
    const clock = new HybridClock();
    expect((await answerPull(store, clock, { id: 1, from: 5 }, 1 << 20))[0]).toBe('snapshot');
    expect((await answerPull(store, clock, { id: 1, from: 30 }, 1 << 20))[0]).toBe('page');
    const [, page] = (await answerPull(store, clock, { id: 1, from: 0, limit: 20 }, 1 << 20)) as SnapshotMessage;
    expect(page.docs).toHaveLength(20);
    expect(page).toMatchObject({ lsn: 30, next: ['docs', page.docs[19]!.k] });
    const [, rest] = (await answerPull(
      store,
      clock,
      { id: 1, from: 0, limit: 20, snap: { lsn: 30, after: page.next! } },
      1 << 20,
    )) as SnapshotMessage;
    expect(rest.docs).toHaveLength(10);
    expect(rest.next).toBeUndefined();
  });

  it('tells an agent that reuses a seq for different content to start a new incarnation', async () => {
    const { ingestor } = setup();
    const ops = [put(1, 'x', 1), put(2, 'y', 2)];
    await ingestor.ingest([{ kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops } }]);
    const out = await ingestor.ingest([
      { kind: 'batch', agentId: 'pi-a', batch: { inc: INC_A, ops: [ops[0]!, put(2, 'other', 'restored'), put(3, 'z', 3)] } },
    ]);
    expect(out.replies.map((r) => r.message[0])).toEqual(['ack', 'reincarnate']);
    expect(results(out.replies[0]!)).toEqual([{ seq: 1, outcome: 'committed', lsn: 1, dup: true }]);
    expect(out.replies[1]!.message).toEqual(['reincarnate', expect.objectContaining({ inc: INC_A, seq: 2 })]);
    expect(store.db.head).toBe(2);
  });
});
