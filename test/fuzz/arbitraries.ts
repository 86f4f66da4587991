import fc from 'fast-check';
import { encodeCbor } from '../../shared/codec.js';
import type { RejectReason } from '../../shared/errors.js';
import { limits } from '../../shared/limits.js';
import type { JsonValue } from '../../shared/values.js';
import { freshInc, hlcAt, nowHlc, putOp, tagged, type OpKind, type WireOp } from './craft.js';

/** Generators of hostile input, each paired with what the hub must answer. */

const COLLECTION = /^[a-z0-9_-]{1,64}$/;

/** Valid collection names for the attacker; never the honest agent's. */
export const ATTACKER_COLLECTIONS = ['fz', 'fz_b', 'fz-c', '0', 'z'.repeat(64)] as const;

/**
 * The hub refuses a `__proto__` field by rule, and `__proto_` too (cbor-x's renaming of it:
 * shared/values.ts); generators that promise valid values leave both out.
 */
export function hasProtoField(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasProtoField);
  if (typeof value !== 'object' || value === null) return false;
  return Object.keys(value).some((k) => k === '__proto__' || k === '__proto_' || hasProtoField((value as Record<string, unknown>)[k]));
}

/** JSON as it survives the wire (-0 travels as 0). */
const normalise = (value: unknown): JsonValue => JSON.parse(JSON.stringify(value)) as JsonValue;

const jsonValue = fc.jsonValue({ maxDepth: 4, stringUnit: 'binary' }).filter((v) => !hasProtoField(v));
const patchFields = fc
  .dictionary(fc.string({ unit: 'binary', maxLength: 12 }), fc.oneof(fc.constant(null), jsonValue), { maxKeys: 6, noNullPrototype: true })
  .filter((v) => !hasProtoField(v));

// ---- single ops: one defect each (or none), with the outcome the hub owes

export type Expected = { outcome: 'committed'; deleted: boolean; value?: JsonValue } | { outcome: 'rejected'; reason: RejectReason };

type KeySpec = { unique: string } | { exactly: string } | 'unique-512-bytes';
type HlcSpec = 'now' | 'past' | 'future' | 'max';

export interface PlannedOp {
  c: string;
  k: KeySpec;
  op: OpKind;
  /** The value, sent as its CBOR encoding; absent: no `v` field on the wire. */
  v?: unknown;
  /** Bytes sent as `v` as they are, instead of an encoded value: not one plain CBOR item. */
  raw?: Uint8Array;
  hlc: HlcSpec;
  base?: number;
  expected: Expected;
}

const validOp: fc.Arbitrary<PlannedOp> = fc
  .record({
    c: fc.constantFrom(...ATTACKER_COLLECTIONS),
    k: fc.oneof(
      // NUL is refused in keys (PostgreSQL text cannot hold it): see badKey.
      { arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((s) => ({ unique: s.replaceAll('\u0000', '') })), weight: 5 },
      { arbitrary: fc.constant('unique-512-bytes' as const), weight: 1 },
    ),
    hlc: fc.constantFrom<HlcSpec>('now', 'past'),
    base: fc.option(fc.nat({ max: 1_000_000 }), { nil: undefined }),
    write: fc.oneof(
      jsonValue.map((v) => ({ op: 'put' as const, v, expected: { outcome: 'committed' as const, deleted: false, value: normalise(v) } })),
      patchFields.map((v) => ({
        op: 'patch' as const,
        v,
        // On a new document a patch is the fields it sets; null means "remove".
        expected: {
          outcome: 'committed' as const,
          deleted: false,
          value: normalise(Object.fromEntries(Object.entries(v).filter(([, f]) => f !== null))),
        },
      })),
      fc.constant({ op: 'del' as const, v: undefined, expected: { outcome: 'committed' as const, deleted: true } }),
    ),
  })
  .map(({ write, base, ...rest }) => ({
    ...rest,
    op: write.op,
    ...(write.v !== undefined && { v: write.v }),
    ...(base !== undefined && { base }),
    expected: write.expected,
  }));

const rejected = (reason: RejectReason): Expected => ({ outcome: 'rejected', reason });
const template = (c: string = ATTACKER_COLLECTIONS[0]): Omit<PlannedOp, 'expected'> => ({
  c,
  k: { unique: '' },
  op: 'put',
  v: 1,
  hlc: 'now',
});

const badCollection = fc
  .oneof(
    fc.constantFrom('', 'Fz', 'has space', 'dot.ted', 'a/b', '+', '#', 'ü', 'z'.repeat(65), '\u0000'),
    fc.string({ unit: 'binary', maxLength: 80 }).filter((s) => !COLLECTION.test(s)),
  )
  .map((c): PlannedOp => ({ ...template(c), expected: rejected('invalid_collection') }));

const badKey = fc
  .constantFrom('', 'é'.repeat(257), 'k'.repeat(limits.maxKeyBytes + 1), '\u{1F600}'.repeat(129), 'nul\u0000key')
  .map((k): PlannedOp => ({ ...template(), k: { exactly: k }, expected: rejected('invalid_key') }));

/**
 * Values untagged CBOR can carry and JSON cannot; each must be refused as `invalid_value`.
 * (Tagged ones — dates, sets, maps with other keys, bignums, regexps, errors — are refused
 * whole by the codec; the tags test covers them.)
 */
const notJson = fc.oneof(
  fc.constantFrom<unknown>(
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    [1, Number.NaN],
    { a: Number.NEGATIVE_INFINITY },
    [undefined],
    { a: undefined },
    new Uint8Array([1, 2]),
    12345678901234567890n,
    JSON.parse('{"__proto__": {"admin": true}}') as unknown,
  ),
  // nested deeper than the 32 levels a document may have
  fc.integer({ min: limits.maxValueDepth + 1, max: 300 }).map((depth) => {
    let v: unknown = 1;
    for (let i = 0; i < depth; i++) v = [v];
    return v;
  }),
);

/**
 * Value bytes that are not exactly one plain CBOR data item; each must be refused as
 * `invalid_value` (the message around them is well-formed: only the hub's check of the value
 * can refuse them).
 */
const notOneItem: fc.Arbitrary<Uint8Array> = fc.oneof(
  // a value followed by more bytes
  fc.tuple(jsonValue, fc.uint8Array({ minLength: 1, maxLength: 8 })).map(([v, extra]) => Buffer.concat([encodeCbor(v), extra])),
  // a value cut short (an item's encoding has no proper prefix that is an item), or no bytes at all
  jsonValue.map((v) => encodeCbor(v)).chain((bytes) => fc.nat({ max: bytes.length - 1 }).map((n) => Buffer.from(bytes.subarray(0, n)))),
  // a tag: ones cbor-x would interpret (refused unread), and ones it does not know
  fc
    .tuple(fc.constantFrom(0, 1, 2, 3, 4, 5, 21, 24, 25, 27, 28, 29, 32, 35, 64, 258, 259, 300, 301, 40_000), jsonValue)
    .map(([tag, v]) => tagged(tag, v)),
  // a non-finite float in half, single and double precision; a break, a simple value, undefined
  fc.constantFrom(
    Buffer.from([0xf9, 0x7e, 0x00]),
    Buffer.from([0xf9, 0x7c, 0x00]),
    Buffer.from([0xfa, 0xff, 0x80, 0x00, 0x00]),
    Buffer.from([0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]),
    Buffer.from([0xff]),
    Buffer.from([0xf0]),
    Buffer.from([0xf7]),
  ),
);

const badValue = fc.oneof(
  notJson.map((v): PlannedOp => ({ ...template(), v, expected: rejected('invalid_value') })),
  fc
    .tuple(fc.constantFrom<OpKind>('put', 'patch'), notOneItem)
    .map(([op, raw]): PlannedOp => ({ ...template(), op, raw, expected: rejected('invalid_value') })),
  notJson.map((v): PlannedOp => ({ ...template(), op: 'patch', v: { field: v }, expected: rejected('invalid_value') })),
  // put and patch need a value; a patch needs an object of fields
  fc.constantFrom<OpKind>('put', 'patch').map((op): PlannedOp => ({
    c: ATTACKER_COLLECTIONS[0],
    k: { unique: '' },
    op,
    hlc: 'now',
    expected: rejected('invalid_value'),
  })),
  fc
    .constantFrom<unknown>([1, 2], 'text', 7, null, true)
    .map((v): PlannedOp => ({ ...template(), op: 'patch', v, expected: rejected('invalid_value') })),
);

const badClock = fc
  .constantFrom<HlcSpec>('future', 'max')
  .map((hlc): PlannedOp => ({ ...template(), hlc, expected: rejected('clock_skew') }));

/** One op: mostly valid, otherwise with exactly one defect. */
export const plannedOp: fc.Arbitrary<PlannedOp> = fc.oneof(
  { arbitrary: validOp, weight: 4 },
  { arbitrary: badCollection, weight: 1 },
  { arbitrary: badKey, weight: 1 },
  { arbitrary: badValue, weight: 2 },
  { arbitrary: badClock, weight: 1 },
);

/** The op on the wire; `unique` makes its key unlike any other, so that no write conflicts. */
export function materialise(planned: PlannedOp, seq: number, unique: string): WireOp {
  const k =
    planned.k === 'unique-512-bytes'
      ? unique + 'x'.repeat(limits.maxKeyBytes - Buffer.byteLength(unique))
      : 'exactly' in planned.k
        ? planned.k.exactly
        : `${unique}${planned.k.unique}`;
  const hlc = { now: nowHlc(), past: hlcAt(1), future: hlcAt(Date.now() + 10 * 60_000), max: 'f'.repeat(16) }[planned.hlc];
  return {
    seq,
    c: planned.c,
    k,
    op: planned.op,
    hlc,
    ...(planned.raw !== undefined ? { v: planned.raw } : 'v' in planned && { v: encodeCbor(planned.v) }),
    ...(planned.base !== undefined && { base: planned.base }),
  };
}

// ---- whole messages

/** A valid message of each kind, as a plain value to mutate. */
function validMessages(): unknown[] {
  return [
    ['batch', { inc: freshInc(), ops: [putOp(1, 'fz', 'k', { a: 1 })] }],
    ['pull', { id: 1, from: 0, cs: ['fz'], limit: 10, snap: { lsn: 0, after: ['fz', 'k'] } }],
    ['status', { applied: { fz: 1 }, outbox: 0 }],
    ['ranges', { id: 1, c: 'fz', d: 0, ps: [0], bits: 8 }],
    ['refetch', { id: 2, c: 'fz', d: 8, ps: [1], after: 'k' }],
  ];
}

/** Valid messages cut short, or followed by extra bytes: never one whole CBOR item. */
export const brokenCbor: fc.Arbitrary<Buffer> = fc.oneof(
  fc.tuple(fc.nat({ max: 2 }), fc.double({ min: 0, max: 1, maxExcluded: true })).map(([i, cut]) => {
    const bytes = encodeCbor(validMessages()[i]);
    return bytes.subarray(0, Math.floor(cut * bytes.length));
  }),
  fc
    .tuple(fc.nat({ max: 2 }), fc.uint8Array({ minLength: 1, maxLength: 16 }))
    .map(([i, extra]) => Buffer.concat([encodeCbor(validMessages()[i]), extra])),
);

/** Replaces the value at `path` in a deep copy of `root` (`undefined` deletes it). */
function setAt(root: unknown, path: ReadonlyArray<string | number>, value: unknown): unknown {
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let node = copy;
  for (const step of path.slice(0, -1)) node = node[step] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (value === undefined) delete node[last];
  else node[last] = value;
  return copy;
}

/** Wrong for every field it is put in below: no strings, no integers, and [] / {} only where they are incomplete. */
const wrongType = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.double().filter((d) => !Number.isInteger(d)),
  fc.constant([]),
  fc.constant({}),
);

/** A schema violation of a valid message, with the reason it is one. */
export const schemaViolation: fc.Arbitrary<[label: string, message: unknown]> = fc.oneof(
  fc.constantFrom<[string, unknown]>(
    ['an unknown message type', ['hello', {}]],
    ['a bare body', { inc: 'a'.repeat(32), ops: [] }],
    ['a tuple of three', [...(validMessages()[1] as unknown[]), 'extra']],
    ['a tuple of one', ['pull']],
    ['a down message sent up', ['ack', { inc: 'a'.repeat(32), hlc: '0'.repeat(16), results: [] }]],
    ['an empty batch', setAt(validMessages()[0], [1, 'ops'], [])],
    [
      'a batch of 1001 ops',
      setAt(
        validMessages()[0],
        [1, 'ops'],
        Array.from({ length: 1001 }, (_, i) => putOp(i + 1, 'fz', 'k', i)),
      ),
    ],
    ['an agent id in the batch', setAt(validMessages()[0], [1, 'agentId'], 'pi-honest')],
    ['an origin in an op', setAt(validMessages()[0], [1, 'ops', 0, 'o'], 'pi-honest')],
    ['an agent id in an op', setAt(validMessages()[0], [1, 'ops', 0, 'agent'], 'pi-honest')],
    ['a value not as its bytes', setAt(validMessages()[0], [1, 'ops', 0, 'v'], { a: 1 })],
    ['a value as a text string', setAt(validMessages()[0], [1, 'ops', 0, 'v'], 'a')],
    ['a value as an integer', setAt(validMessages()[0], [1, 'ops', 0, 'v'], 7)],
    ['seq 0', setAt(validMessages()[0], [1, 'ops', 0, 'seq'], 0)],
    ['seq -1', setAt(validMessages()[0], [1, 'ops', 0, 'seq'], -1)],
    ['seq 1.5', setAt(validMessages()[0], [1, 'ops', 0, 'seq'], 1.5)],
    ['a fractional seq', setAt(validMessages()[0], [1, 'ops', 0, 'seq'], 2.5)],
    ['an unknown op', setAt(validMessages()[0], [1, 'ops', 0, 'op'], 'drop')],
    ['an upper-case hlc', setAt(validMessages()[0], [1, 'ops', 0, 'hlc'], 'ABCDEF0123456789')],
    ['a short incarnation', setAt(validMessages()[0], [1, 'inc'], 'abc')],
    ['rep 0', setAt(validMessages()[0], [1, 'ops', 0, 'rep'], 0)],
    ['a negative base', setAt(validMessages()[0], [1, 'ops', 0, 'base'], -1)],
    ['a 257-char collection', setAt(validMessages()[0], [1, 'ops', 0, 'c'], 'c'.repeat(257))],
    ['a 2049-char key', setAt(validMessages()[0], [1, 'ops', 0, 'k'], 'k'.repeat(2049))],
    ['ranges split 512 ways', setAt(validMessages()[3], [1, 'bits'], 9)],
    ['a range 33 bits deep', setAt(validMessages()[4], [1, 'd'], 33)],
    ['a refetch of no range', setAt(validMessages()[4], [1, 'ps'], [])],
    [
      'a refetch of 4097 ranges',
      setAt(
        validMessages()[4],
        [1, 'ps'],
        Array.from({ length: 4097 }, (_, i) => i),
      ),
    ],
    ['a range id of 2^32', setAt(validMessages()[3], [1, 'ps'], [2 ** 32])],
    ['pull limit 0', setAt(validMessages()[1], [1, 'limit'], 0)],
    ['pull limit 10001', setAt(validMessages()[1], [1, 'limit'], 10_001)],
    ['pull from -1', setAt(validMessages()[1], [1, 'from'], -1)],
    ['a snapshot cursor of one', setAt(validMessages()[1], [1, 'snap', 'after'], ['fz'])],
    [
      '1025 pull collections',
      setAt(
        validMessages()[1],
        [1, 'cs'],
        Array.from({ length: 1025 }, (_, i) => `c${i}`),
      ),
    ],
    ['a negative outbox', setAt(validMessages()[2], [1, 'outbox'], -1)],
    ['a fractional applied LSN', setAt(validMessages()[2], [1, 'applied', 'fz'], 0.5)],
  ),
  // a required field missing
  fc
    .constantFrom<[number, Array<string | number>]>(
      [0, [1, 'inc']],
      [0, [1, 'ops']],
      [0, [1, 'ops', 0, 'seq']],
      [0, [1, 'ops', 0, 'c']],
      [0, [1, 'ops', 0, 'k']],
      [0, [1, 'ops', 0, 'op']],
      [0, [1, 'ops', 0, 'hlc']],
      [1, [1, 'id']],
      [1, [1, 'from']],
      [2, [1, 'applied']],
      [2, [1, 'outbox']],
    )
    .map(([i, path]): [string, unknown] => [`no ${path.join('.')}`, setAt(validMessages()[i], path, undefined)]),
  // a field of the wrong type
  fc
    .tuple(
      fc.constantFrom<[number, Array<string | number>]>(
        [0, [1, 'inc']],
        [0, [1, 'ops']],
        [0, [1, 'ops', 0]],
        [0, [1, 'ops', 0, 'seq']],
        [0, [1, 'ops', 0, 'c']],
        [0, [1, 'ops', 0, 'k']],
        [0, [1, 'ops', 0, 'hlc']],
        [0, [1, 'ops', 0, 'v']],
        [0, [1]],
        [1, [1, 'id']],
        [1, [1, 'from']],
        [1, [1, 'cs', 0]],
        [1, [1, 'snap']],
        [2, [1, 'applied', 'fz']],
      ),
      wrongType,
    )
    .map(([[i, path], value]): [string, unknown] => [`${path.join('.')} = ${fc.stringify(value)}`, setAt(validMessages()[i], path, value)]),
  // not a tuple at all
  fc
    .jsonValue({ maxDepth: 3 })
    .filter((v) => !Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string')
    .map((v): [string, unknown] => ['not a [type, body] tuple', v]),
);

/** Random bytes, with CBOR-ish heads mixed in more often than chance would. */
export const randomBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 512 }),
  fc
    .array(fc.oneof(fc.constantFrom(0x82, 0x9f, 0xbf, 0xff, 0xd8, 0xd9, 0xc2, 0x5a, 0x7b, 0xf7), fc.integer({ min: 0, max: 255 })), {
      maxLength: 64,
    })
    .map((bytes) => Uint8Array.from(bytes)),
);
