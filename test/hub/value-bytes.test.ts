import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CollectionPolicies, parseHubConfig } from '../../hub/config.js';
import { defaultIngestOptions, Ingestor, type IngestOutput } from '../../hub/ingest.js';
import { answerPull } from '../../hub/pull.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { unpackAck } from '../../shared/acks.js';
import { encodeHlc, HybridClock } from '../../shared/hlc.js';
import type { OpResult, PageMessage, SnapshotMessage, WriteOp } from '../../shared/messages.js';
import { decodeValue, encodeValue } from '../../shared/value-bytes.js';
import { tempDir } from '../helpers/temp.js';

const INC = 'a'.repeat(32);
let t = Date.now();
const hlc = (): string => encodeHlc(t++, 0);
const op = (seq: number, k: string, kind: WriteOp['op'], v: Uint8Array | undefined, c = 'docs'): WriteOp => ({
  seq,
  c,
  k,
  op: kind,
  ...(v !== undefined && { v }),
  hlc: hlc(),
});
/** Bytes as hex, so that a comparison is of the bytes alone and a difference reads plainly. */
const hex = (bytes: Uint8Array | null | undefined): string | undefined => (bytes ? Buffer.from(bytes).toString('hex') : undefined);

/**
 * `{"a": 1, "b": 2}` and the like, as an encoder other than the codec writes them: shortest
 * heads throughout (cbor-x gives a map a 16-bit length). Valid CBOR of the same value, other bytes.
 */
const SHORTEST = {
  put: Buffer.from('a2616101616202', 'hex'), // {"a": 1, "b": 2}
  text: Buffer.from('a2616e01647465787462c3a9', 'hex'), // {"n": 1, "text": "é"}
  patch: Buffer.from('a26162f6616303', 'hex'), // {"b": null, "c": 3}
};

describe('value bytes at the hub', () => {
  let store: SqliteHubStore | undefined;
  afterEach(() => store?.db.close());

  function setup(config: unknown = {}): { ingestor: Ingestor; dir: string } {
    const dir = tempDir('value-bytes');
    store = new SqliteHubStore(dir);
    const ingestor = new Ingestor(store, new HybridClock(), new CollectionPolicies(parseHubConfig(config)), defaultIngestOptions);
    return { ingestor, dir };
  }

  const upload = (ingestor: Ingestor, ops: WriteOp[], agentId = 'pi-a'): Promise<IngestOutput> =>
    ingestor.ingest([{ kind: 'batch', agentId, batch: { inc: INC, ops } }]);

  const results = (out: IngestOutput): OpResult[] => {
    const reply = out.replies[0]!.message;
    if (reply[0] !== 'ack') throw new Error(`expected an ack, got ${reply[0]}`);
    return unpackAck(reply[1]);
  };

  /** The value column of the log and of the documents, read from the database file itself. */
  function storedBytes(dir: string): { log: Record<number, string | undefined>; documents: Record<string, string | undefined> } {
    const db = new Database(join(dir, 'hub.db'), { readonly: true });
    try {
      const log = db.prepare<[], { lsn: number; value: Buffer | null }>('SELECT lsn, value FROM log ORDER BY lsn').all();
      const documents = db.prepare<[], { key: string; value: Buffer | null }>('SELECT key, value FROM documents ORDER BY key').all();
      return {
        log: Object.fromEntries(log.map((r) => [r.lsn, hex(r.value)])),
        documents: Object.fromEntries(documents.map((r) => [r.key, hex(r.value)])),
      };
    } finally {
      db.close();
    }
  }

  it("commits a put's value bytes exactly as the agent sent them: log, document, change set, page and snapshot", async () => {
    const { ingestor, dir } = setup();
    const ours = encodeValue({ n: 1, text: 'é' });
    const theirs = SHORTEST.text;
    // The same value, encoded two ways: what is committed tells which bytes the hub kept.
    expect(hex(theirs)).not.toBe(hex(ours));
    expect(decodeValue(theirs)).toEqual(decodeValue(ours));
    const sent = { a: hex(ours), b: hex(theirs) };

    const out = await upload(ingestor, [op(1, 'a', 'put', ours), op(2, 'b', 'put', theirs)]);
    expect(results(out)).toEqual([
      { seq: 1, outcome: 'committed', lsn: 1 },
      { seq: 2, outcome: 'committed', lsn: 2 },
    ]);
    // Published as sent.
    expect(out.changeSets).toHaveLength(1);
    expect(out.changeSets[0]![1].changes.map((c) => [c.k, hex(c.v)])).toEqual([
      ['a', sent.a],
      ['b', sent.b],
    ]);
    // Stored as sent: the log and the document, in the database and as the store reads them.
    expect(storedBytes(dir)).toEqual({ log: { 1: sent.a, 2: sent.b }, documents: sent });
    expect(hex(store!.db.document('docs', 'b')!.encoded)).toBe(sent.b);
    expect(store!.db.document('docs', 'b')!.value).toEqual({ n: 1, text: 'é' });
    // Sent on as stored: a page of the log, and a snapshot once the log is pruned.
    const clock = new HybridClock();
    const [, page] = (await answerPull(store!, clock, { id: 1, from: 0 }, 1 << 20)) as PageMessage;
    expect(page.changes.map((c) => [c.k, hex(c.v)])).toEqual([
      ['a', sent.a],
      ['b', sent.b],
    ]);
    expect(store!.db.prune({ maxAgeMs: 1, maxEntries: 0 }, Date.now() + 1000)).toBe(2);
    const [kind, snapshot] = (await answerPull(store!, clock, { id: 2, from: 0 }, 1 << 20)) as SnapshotMessage;
    expect(kind).toBe('snapshot');
    expect(snapshot.docs.map((d) => [d.k, hex(d.v)])).toEqual([
      ['a', sent.a],
      ['b', sent.b],
    ]);
  });

  it('knows a redelivery by its bytes: the same op again is a duplicate, committed once', async () => {
    const { ingestor } = setup();
    const first = op(1, 'k', 'put', SHORTEST.put);
    await upload(ingestor, [first]);
    const again = await upload(ingestor, [{ ...first, v: Buffer.from(SHORTEST.put) }]);
    expect(results(again)).toEqual([{ seq: 1, outcome: 'committed', lsn: 1, dup: true }]);
    expect(store!.db.head).toBe(1);
  });

  it('encodes a main-site write once, as the codec does, and stores and sends those bytes', async () => {
    const { ingestor, dir } = setup();
    const out = await ingestor.ingest([{ kind: 'hub', write: { c: 'docs', k: 'h', op: 'put', v: { a: 1, b: [true, null] } } }]);
    expect(out.hubResults).toMatchObject([{ outcome: 'committed', lsn: 1 }]);
    const expected = hex(encodeValue({ a: 1, b: [true, null] }));
    expect(hex(out.changeSets[0]![1].changes[0]!.v)).toBe(expected);
    expect(storedBytes(dir)).toEqual({ log: { 1: expected }, documents: { h: expected } });
  });

  it("applies a patch by decoding: the merged document is the hub's encoding of the merged object", async () => {
    const { ingestor, dir } = setup();
    const out = await upload(ingestor, [op(1, 'p', 'put', SHORTEST.put), op(2, 'p', 'patch', SHORTEST.patch)]);
    expect(results(out)).toEqual([
      { seq: 1, outcome: 'committed', lsn: 1 },
      { seq: 2, outcome: 'committed', lsn: 2 },
    ]);
    const merged = hex(encodeValue({ a: 1, c: 3 }));
    const [put, patched] = out.changeSets[0]![1].changes;
    expect([put!.op, hex(put!.v)]).toEqual(['put', hex(SHORTEST.put)]); // a put as sent
    expect([patched!.op, hex(patched!.v)]).toEqual(['put', merged]); // a patch as the whole merged document
    expect(decodeValue(patched!.v!)).toEqual({ a: 1, c: 3 });
    expect(storedBytes(dir)).toEqual({ log: { 1: hex(SHORTEST.put), 2: merged }, documents: { p: merged } });
  });

  it('under the merge policy too, a patch commits the merged document as the hub encodes it', async () => {
    const { ingestor, dir } = setup({ collections: { profiles: { conflict: 'merge' } } });
    await upload(ingestor, [op(1, 'p', 'put', SHORTEST.put, 'profiles')]);
    const out = await upload(ingestor, [op(1, 'p', 'patch', SHORTEST.patch, 'profiles')], 'pi-b');
    expect(results(out)).toMatchObject([{ seq: 1, outcome: 'committed', lsn: 2 }]);
    const committed = out.changeSets[0]![1].changes[0]!.v!;
    expect(decodeValue(committed)).toEqual({ a: 1, c: 3 });
    // The codec's encoding of what it decoded: not the patch's bytes, not the put's.
    expect(hex(committed)).toBe(hex(encodeValue(decodeValue(committed))));
    expect(storedBytes(dir).documents).toEqual({ p: hex(committed) });
  });

  it("reads a skip's reason from its bytes, and a reason it cannot read as the plain 'skipped'", async () => {
    const { ingestor } = setup();
    const out = await upload(ingestor, [
      op(1, 's1', 'skip', encodeValue('expired')),
      op(2, 's2', 'skip', encodeValue('Not A Reason')),
      op(3, 's3', 'skip', Buffer.concat([encodeValue('expired'), encodeValue('again')])),
      op(4, 's4', 'skip', undefined),
    ]);
    expect(results(out)).toMatchObject([
      { seq: 1, outcome: 'rejected', reason: 'expired' },
      { seq: 2, outcome: 'rejected', reason: 'skipped' },
      { seq: 3, outcome: 'rejected', reason: 'skipped' },
      { seq: 4, outcome: 'rejected', reason: 'skipped' },
    ]);
    expect(store!.db.head).toBe(0);
  });
});
