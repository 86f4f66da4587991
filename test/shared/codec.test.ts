import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { MessageCodec, downCodec, encodeCbor, upCodec } from '../../shared/codec.js';
import { InvalidMessageError, MalformedMessageError, MessageTooLargeError } from '../../shared/errors.js';
import { UpMessage, type UpMessage as Up } from '../../shared/messages.js';
import { encodeValue } from '../../shared/value-bytes.js';

const INC = '0123456789abcdef0123456789abcdef';
const HLC = '0000018f00000001';

describe('message codec', () => {
  it('round-trips every up message type', () => {
    const batch: Up = [
      'batch',
      { inc: INC, ops: [{ seq: 1, c: 'sensors', k: 't1', op: 'put', v: encodeValue({ a: [1, 'x', null, true] }), hlc: HLC, base: 3 }] },
    ];
    const pull: Up = ['pull', { id: 7, from: 42, cs: ['sensors'], limit: 10 }];
    expect(upCodec.decode(upCodec.encode(batch))).toEqual(batch);
    expect(upCodec.decode(upCodec.encode(pull))).toEqual(pull);
  });

  it('refuses a message over the size limit before parsing it', () => {
    const small = new MessageCodec(UpMessage, 64);
    const bytes = encodeCbor(['pull', { id: 7, from: 1, cs: Array.from({ length: 20 }, (_, i) => `c${i}`) }]);
    expect(() => small.decode(bytes)).toThrow(MessageTooLargeError);
    expect(() => small.encode(['pull', { id: 7, from: 1, cs: Array.from({ length: 20 }, (_, i) => `c${i}`) }])).toThrow(
      /exceeds the limit of 64 bytes/,
    );
  });

  it.each([
    ['empty', Buffer.alloc(0)],
    ['a reserved byte', Buffer.from([0xff])],
    ['truncated', encodeCbor(['pull', { id: 7, from: 1 }]).subarray(0, 4)],
    ['two items', Buffer.concat([encodeCbor(['pull', { id: 7, from: 1 }]), encodeCbor(['pull', { id: 7, from: 2 }])])],
    ['an array claiming 4 billion items', Buffer.from([0x9a, 0xff, 0xff, 0xff, 0xff])],
    ['a date (tag 1)', Buffer.from([0x82, 0x64, 0x70, 0x75, 0x6c, 0x6c, 0xc1, 0x00])],
    ['value sharing (tag 28)', Buffer.from([0xd8, 0x1c, 0x81, 0xd8, 0x1d, 0x00])],
    ['a bignum (tag 2)', Buffer.concat([Buffer.from([0xc2, 0x5a, 0x00, 0x01, 0x00, 0x00]), Buffer.alloc(65536, 0xff)])],
  ])('reports %s as malformed CBOR', (_label, bytes) => {
    expect(() => upCodec.decode(bytes)).toThrow(MalformedMessageError);
  });

  it.each([
    ['a bare map', { from: 1 }],
    ['an unknown type', ['hello', {}]],
    ['a wrong field type', ['pull', { id: 7, from: 'one' }]],
    ['an extra field', ['pull', { id: 7, from: 1, agent: 'someone-else' }]],
    ['a negative seq', ['batch', { inc: INC, ops: [{ seq: -1, c: 'c', k: 'k', op: 'put', v: encodeValue(1), hlc: HLC }] }]],
    ['a bad hlc', ['batch', { inc: INC, ops: [{ seq: 1, c: 'c', k: 'k', op: 'put', v: encodeValue(1), hlc: 'yesterday' }] }]],
    ['a value not as its bytes', ['batch', { inc: INC, ops: [{ seq: 1, c: 'c', k: 'k', op: 'put', v: 1, hlc: HLC }] }]],
    ['an unknown op', ['batch', { inc: INC, ops: [{ seq: 1, c: 'c', k: 'k', op: 'drop', hlc: HLC }] }]],
    ['an empty batch', ['batch', { inc: INC, ops: [] }]],
    ['a down message sent up', ['ack', { inc: INC, hlc: HLC, results: [] }]],
  ])('reports %s as invalid, with the path', (_label, value) => {
    const error = (() => {
      try {
        upCodec.decode(encodeCbor(value));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(InvalidMessageError);
    expect((error as InvalidMessageError).code).toBe('OUTPOST_INVALID_MESSAGE');
  });

  it('keeps the directions apart', () => {
    expect(() => downCodec.decode(upCodec.encode(['pull', { id: 7, from: 0 }]))).toThrow(InvalidMessageError);
  });

  it('writes plain CBOR maps (no record extension) that any decoder reads', () => {
    const bytes = encodeCbor({ a: 1 });
    expect(bytes[0]! >> 5).toBe(5); // major type 5: a map, not tag 105 (a cbor-x record)
    expect(bytes.includes(0x69)).toBe(false);
  });

  describe('compression', () => {
    const telemetry: Up = [
      'batch',
      {
        inc: INC,
        ops: Array.from({ length: 200 }, (_, i) => ({
          seq: i + 1,
          c: 'telemetry',
          k: `t${i}`,
          op: 'put' as const,
          v: encodeValue({ celsius: 20 + i / 10, at: 1_764_000_000_000 + i }),
          hlc: HLC,
        })),
      },
    ];

    it('deflates a large message to a fraction of its size and reads it back as it was', () => {
      const wire = upCodec.encode(telemetry);
      const plain = encodeCbor(telemetry);
      expect(wire[0]! >> 5, 'a CBOR byte string').toBe(2);
      expect(wire.length).toBeLessThan(plain.length / 3);
      expect(upCodec.decode(wire)).toEqual(telemetry);
    });

    it('sends a small message as it is', () => {
      const pull: Up = ['pull', { id: 7, from: 42 }];
      expect(upCodec.encode(pull)).toEqual(encodeCbor(pull));
    });

    it('refuses a message that inflates past the size limit, without inflating all of it', () => {
      const bomb = encodeCbor(deflateRawSync(Buffer.alloc(50 * 1024 * 1024)));
      expect(bomb.length).toBeLessThan(100 * 1024);
      expect(() => upCodec.decode(bomb)).toThrow(MessageTooLargeError);
    });

    it.each([
      ['bytes that are not deflate', encodeCbor(Buffer.from('not deflated at all'))],
      [
        'trailing bytes after the byte string',
        Buffer.concat([encodeCbor(deflateRawSync(encodeCbor(['pull', { id: 1, from: 0 }]))), Buffer.from([1])]),
      ],
      ['deflated garbage', encodeCbor(deflateRawSync(Buffer.from([0xff, 0xfe])))],
    ])('refuses %s as a malformed message', (_name, bytes) => {
      expect(() => upCodec.decode(bytes)).toThrow(MalformedMessageError);
    });

    it('validates what it inflated like any other message', () => {
      expect(() => upCodec.decode(encodeCbor(deflateRawSync(encodeCbor(['pull', { id: -1, from: 0 }]))))).toThrow(InvalidMessageError);
    });
  });
});
