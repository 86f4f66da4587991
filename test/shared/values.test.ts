import { describe, expect, it } from 'vitest';
import { decodeCbor } from '../../shared/codec.js';
import { applyPatch, checkCollectionName, checkKey, checkValue } from '../../shared/values.js';

describe('document values', () => {
  it('accepts plain JSON data', () => {
    expect(checkValue({ a: [1, 2.5, 'x', null, true, { b: {} }] })).toBeUndefined();
  });

  it.each([
    ['a Map', new Map()],
    ['a Date', new Date()],
    ['a typed array', new Uint8Array(2)],
    ['NaN', Number.NaN],
    ['undefined inside', { a: undefined }],
    ['a class instance', new (class Widget {})()],
  ])('refuses %s', (_label, value) => {
    expect(checkValue(value)).toMatchObject({ reason: 'invalid_value' });
  });

  it('refuses nesting deeper than the limit', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    expect(checkValue(deep, 32)).toMatchObject({ reason: 'invalid_value', detail: expect.stringContaining('deeper') as string });
  });

  it('cannot be used to pollute prototypes', () => {
    // {"__proto__": {"polluted": true}} as CBOR: decodes to a plain object, prototype untouched
    const fromCbor = decodeCbor(Buffer.from('a1695f5f70726f746f5f5fa168706f6c6c75746564f5', 'hex'));
    expect(Object.getPrototypeOf(fromCbor)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // cbor-x renamed the key to __proto_; JSON.parse makes __proto__ an own field: both refused
    expect(checkValue(fromCbor)).toMatchObject({ reason: 'invalid_value' });
    expect(checkValue(JSON.parse('{"__proto__": {"polluted": true}}'))).toMatchObject({ reason: 'invalid_value' });
  });

  it('checks collection names and key sizes', () => {
    expect(checkCollectionName('sensors_2-b')).toBeUndefined();
    expect(checkCollectionName('Sensors')).toMatchObject({ reason: 'invalid_collection' });
    expect(checkCollectionName('a'.repeat(65))).toMatchObject({ reason: 'invalid_collection' });
    expect(checkKey('ü'.repeat(256))).toBeUndefined(); // 512 bytes
    expect(checkKey('ü'.repeat(257))).toMatchObject({ reason: 'invalid_key' });
    expect(checkKey('')).toMatchObject({ reason: 'invalid_key' });
    expect(checkKey('a\u0000b')?.detail).toMatch(/NUL/);
  });

  it('patches shallowly: fields replace, null removes, non-objects start afresh', () => {
    expect(applyPatch({ a: 1, b: { x: 1 }, c: 3 }, { b: { y: 2 }, c: null, d: 4 })).toEqual({ a: 1, b: { y: 2 }, d: 4 });
    expect(applyPatch(undefined, { a: 1 })).toEqual({ a: 1 });
    expect(applyPatch([1, 2], { a: 1 })).toEqual({ a: 1 });
  });
});
