import { unpackAck } from '../../shared/acks.js';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeCbor } from '../../shared/codec.js';
import { ErrorCode } from '../../shared/errors.js';
import { limits } from '../../shared/limits.js';
import { topics } from '../../shared/topics.js';
import { TestFleet } from '../helpers/fleet.js';
import { RawClient } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

const INC = 'ab'.repeat(16);

describe("bad input on an agent's up topic", () => {
  let fleet: TestFleet;
  let raw: RawClient;
  afterEach(async () => {
    await raw?.end();
    await fleet.close();
  });

  async function setup(): Promise<void> {
    fleet = new TestFleet();
    await fleet.startHub();
    raw = await RawClient.connect(fleet.port, 'rogue-1');
  }

  async function expectError(code: string): Promise<void> {
    const message = await waitFor(`an error reply ${code}`, () => raw.received.find((m) => m[0] === 'error'));
    expect(message[0]).toBe('error');
    expect(message[1]).toMatchObject({ code });
    expect((message[1] as { message: string }).message.length).toBeGreaterThan(20);
    raw.received.length = 0;
  }

  it('malformed CBOR gets a typed error on the down topic and changes nothing', async () => {
    await setup();
    await raw.publish(topics.up('rogue-1'), Buffer.from([0xff, 0x00, 0x13, 0x37]));
    await expectError(ErrorCode.MALFORMED_MESSAGE);
    await raw.publish(topics.up('rogue-1'), encodeCbor(['batch', { inc: INC, ops: [{ seq: 1 }] }]).subarray(0, 10));
    await expectError(ErrorCode.MALFORMED_MESSAGE);
    await raw.publish(topics.up('rogue-1'), encodeCbor(['batch', { inc: INC, ops: [{ seq: 'one', c: 'x' }] }]));
    await expectError(ErrorCode.INVALID_MESSAGE);
    await raw.publish(topics.up('rogue-1'), encodeCbor({ hello: 'world' }));
    await expectError(ErrorCode.INVALID_MESSAGE);
    expect(fleet.hub!.store.head).toBe(0);
    expect(raw.closed).toBe(false);
  });

  it('an oversized message gets a typed error, and the hub keeps serving honest agents', async () => {
    await setup();
    const honest = fleet.agent('pi-honest');
    const big = encodeCbor([
      'batch',
      {
        inc: INC,
        ops: [{ seq: 1, c: 'blobs', k: 'b', op: 'put', v: encodeCbor('x'.repeat(limits.maxMessageBytes + 10)), hlc: '0000000000010000' }],
      },
    ]);
    await raw.publish(topics.up('rogue-1'), big);
    await expectError(ErrorCode.MESSAGE_TOO_LARGE);
    expect(fleet.hub!.store.head).toBe(0);

    await honest.put('notes', 'n1', { text: 'still here' });
    await waitFor('honest write committed', () => fleet.hub!.store.document('notes', 'n1'));
    expect(fleet.hub!.store.head).toBe(1);
  });

  it('invalid ops are rejected one by one, with reasons, and never block the valid ones', async () => {
    await setup();
    const now = Date.now().toString(16).padStart(12, '0') + '0000';
    await raw.publish(
      topics.up('rogue-1'),
      encodeCbor([
        'batch',
        {
          inc: INC,
          ops: [
            { seq: 1, c: 'Bad Name', k: 'k', op: 'put', v: encodeCbor(1), hlc: now },
            { seq: 2, c: 'ok', k: 'k', op: 'put', v: encodeCbor({ reading: Number.NaN }), hlc: now },
            { seq: 3, c: 'ok', k: 'k', op: 'patch', v: encodeCbor([1, 2]), hlc: now },
            { seq: 4, c: 'ok', k: 'k', op: 'put', v: encodeCbor({ fine: true }), hlc: now },
            { seq: 5, c: 'ok', k: '', op: 'put', v: encodeCbor(1), hlc: now },
            // value bytes that hold two items, not one
            { seq: 6, c: 'ok', k: 'j', op: 'put', v: Buffer.concat([encodeCbor(1), encodeCbor(2)]), hlc: now },
          ],
        },
      ]),
    );
    const ack = await waitFor('an ack', () => raw.received.find((m) => m[0] === 'ack'));
    expect({ results: ack[0] === 'ack' ? unpackAck(ack[1]) : [] }).toMatchObject({
      results: [
        { seq: 1, outcome: 'rejected', reason: 'invalid_collection' },
        { seq: 2, outcome: 'rejected', reason: 'invalid_value' },
        { seq: 3, outcome: 'rejected', reason: 'invalid_value' },
        { seq: 4, outcome: 'committed', lsn: 1 },
        { seq: 5, outcome: 'rejected', reason: 'invalid_key' },
        { seq: 6, outcome: 'rejected', reason: 'invalid_value' },
      ],
    });
    expect(fleet.hub!.store.head).toBe(1);
  });

  it('a batch delivered twice (as after a reconnect mid-upload) is committed once and re-acked', async () => {
    await setup();
    const now = Date.now().toString(16).padStart(12, '0') + '0000';
    const batch = encodeCbor([
      'batch',
      {
        inc: INC,
        ops: [
          { seq: 1, c: 'ok', k: 'a', op: 'put', v: encodeCbor(1), hlc: now },
          { seq: 2, c: 'ok', k: 'b', op: 'put', v: encodeCbor(2), hlc: now },
        ],
      },
    ]);
    await raw.publish(topics.up('rogue-1'), batch);
    await raw.publish(topics.up('rogue-1'), batch);
    await waitFor('two acks', () => raw.received.filter((m) => m[0] === 'ack').length === 2);
    const [first, second] = raw.received.filter((m) => m[0] === 'ack');
    expect({ results: first![0] === 'ack' ? unpackAck(first![1]) : [] }).toMatchObject({
      results: [
        { seq: 1, lsn: 1 },
        { seq: 2, lsn: 2 },
      ],
    });
    expect({ results: second![0] === 'ack' ? unpackAck(second![1]) : [] }).toMatchObject({
      results: [
        { seq: 1, lsn: 1, dup: true },
        { seq: 2, lsn: 2, dup: true },
      ],
    });
    expect(fleet.hub!.store.head).toBe(2);
  });
});
