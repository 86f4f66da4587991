import { afterEach, describe, expect, it } from 'vitest';
import { broadcastCodec, downCodec, encodeCbor, upCodec } from '../../shared/codec.js';
import { ErrorCode, InvalidMessageError } from '../../shared/errors.js';
import { limits } from '../../shared/limits.js';
import type { DownMessage, LostDoc, UpMessage } from '../../shared/messages.js';
import { PROTOCOL_VERSION } from '../../shared/protocol-version.js';
import { HubCore } from '../../hub/core.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { encodeValue } from '../../shared/value-bytes.js';
import type { JsonValue } from '../../shared/values.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

const LIN = '0123456789abcdef0123456789abcdef';
const HLC = '0000018f00000001';
const doc = (k: string, ver: number, v?: JsonValue): LostDoc => ({
  c: 'docs',
  k,
  ver,
  op: v === undefined ? 'del' : 'put',
  ...(v !== undefined && { v: encodeValue(v) }),
  hlc: HLC,
  o: 'pi-1',
});

describe('protocol 3: lineage in the hub status, lost reports and their acknowledgement', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  });

  it('came with protocol version 3 (4 added content digests, 5 values as their bytes)', () => {
    expect(PROTOCOL_VERSION).toBe(6);
  });

  it('round-trips a lost report and its acknowledgement', () => {
    const lost: UpMessage = ['lost', { id: 12, lin: LIN, fork: 40, docs: [doc('a', 41, { n: 1 }), doc('b', 42)] }];
    const ack: DownMessage = ['lostack', { id: 12, hlc: HLC, epoch: 3 }];
    expect(upCodec.decode(upCodec.encode(lost))).toEqual(lost);
    expect(downCodec.decode(downCodec.encode(ack))).toEqual(ack);
  });

  it.each([
    ['an empty report', { id: 1, lin: LIN, fork: 0, docs: [] }],
    [
      'a report over the chunk limit',
      { id: 1, lin: LIN, fork: 0, docs: Array.from({ length: limits.maxLostDocs + 1 }, (_, i) => doc(`k${i}`, i + 1)) },
    ],
    ['a report without a lineage', { id: 1, fork: 0, docs: [doc('a', 1)] }],
    ['a report with an unknown field', { id: 1, lin: LIN, fork: 0, docs: [doc('a', 1)], extra: true }],
    ['a lost version 0', { id: 1, lin: LIN, fork: 0, docs: [doc('a', 0)] }],
  ])('refuses %s', (_, body) => {
    expect(() => upCodec.decode(upCodec.encode(['lost', body] as never))).toThrow(InvalidMessageError);
  });

  it('refuses a hub status without its lineage (as an older peer would refuse one with it: hence the new version)', () => {
    const status = { v: 3, hlc: HLC, head: 5, fork: 0, collections: {}, undeclared: 'allow', defaults: {} };
    expect(() => broadcastCodec.decode(broadcastCodec.encode(['hub', status] as never))).toThrow(InvalidMessageError);
  });

  it('the hub publishes its lineage, stores a report, acknowledges it, and answers a malformed one with an error', async () => {
    const sent: Array<{ topic: string; payload: Buffer }> = [];
    const store = new SqliteHubStore(tempDir('restore-messages'));
    const core = new HubCore({ store, dev: true, publish: (topic, payload) => sent.push({ topic, payload }) });
    closers.push(() => core.stop());
    core.start();
    const status = broadcastCodec.decode(sent.find((m) => m.topic.endsWith('/hub'))!.payload);
    expect(status[1]).toMatchObject({ v: PROTOCOL_VERSION, lin: store.lineage.id, fork: 0 });

    core.onUp('pi-1', upCodec.encode(['lost', { id: 5, lin: LIN, fork: 0, docs: [doc('a', 3, { n: 1 }), doc('b', 4)] }]));
    const downs = (): DownMessage[] => sent.filter((m) => m.topic.endsWith('/pi-1/down')).map((m) => downCodec.decode(m.payload));
    await waitFor('the acknowledgement', () => downs().find((m) => m[0] === 'lostack'));
    expect(downs()).toEqual([['lostack', { id: 5, hlc: expect.any(String) as unknown }]]);
    expect((await store.lostDocuments({ limit: 10 })).map((d) => [d.key, d.version, d.reporters[0]!.agentId])).toEqual([
      ['a', 3, 'pi-1'],
      ['b', 4, 'pi-1'],
    ]);

    core.onUp('pi-1', encodeCbor(['lost', { id: 6, lin: 'not a lineage', fork: 0, docs: [doc('a', 3)] }]));
    expect(downs().at(-1)).toMatchObject(['error', { code: ErrorCode.INVALID_MESSAGE }]);
    expect(await store.lostDocuments({ limit: 10 })).toHaveLength(2);
  });
});
