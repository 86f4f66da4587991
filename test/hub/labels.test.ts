import { describe, expect, it } from 'vitest';
import { formatLabels, MAX_LABELS, mergeLabels, parseLabelChanges } from '../../hub/labels.js';
import { ScopeRules } from '../../hub/scope-rules.js';
import { ConfigError, ErrorCode } from '../../shared/errors.js';

/** The ConfigError `fn` throws (failing the test if it throws none, or another kind). */
function refusal(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe(ErrorCode.INVALID_CONFIG);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('agent labels', () => {
  it('reads name=value as a set and name- as a removal, the value being all after the first =', () => {
    expect(parseLabelChanges(['site=berlin', 'line-', 'sites=berlin,paris', 'expr=a=b', 'v1.2_x-y=3'])).toEqual({
      set: { site: 'berlin', sites: 'berlin,paris', expr: 'a=b', 'v1.2_x-y': '3' },
      unset: ['line'],
    });
    expect(parseLabelChanges(['a--'])).toEqual({ set: {}, unset: ['a-'] }); // a label whose name ends in a dash
    expect(parseLabelChanges([])).toEqual({ set: {}, unset: [] });
  });

  it('accepts the names scope rules can name, and no others', () => {
    const name = 'a'.repeat(64);
    expect(parseLabelChanges([`${name}=1`]).set[name]).toBe('1');
    // A name a label can have is one a rule can read: both use one pattern.
    expect(() => new ScopeRules({ c: { field: 'f', equals: `{label.${name}}` } })).not.toThrow();
    for (const bad of ['Site', 'a'.repeat(65), 'site name', 'sité', 'a/b', '']) {
      expect(refusal(() => parseLabelChanges([`${bad}=1`])).message).toMatch(/label name .* is invalid: use 1-64 lowercase letters/);
      expect(() => new ScopeRules({ c: { field: 'f', equals: `{label.${bad}}` } })).toThrow(ConfigError);
    }
    expect(refusal(() => parseLabelChanges(['Site-'])).message).toMatch(/"Site" is invalid/);
  });

  it('refuses an empty, overlong or control-character value, saying what to do', () => {
    expect(refusal(() => parseLabelChanges(['site='])).message).toBe(
      'label site has no value: give it 1-256 characters (site=berlin), or remove it with site-',
    );
    expect(parseLabelChanges([`site=${'é'.repeat(256)}`]).set.site).toHaveLength(256);
    expect(refusal(() => parseLabelChanges([`site=${'x'.repeat(257)}`])).message).toMatch(/257 characters long: use at most 256/);
    for (const control of ['\n', '\t', '\u0000', '\u007f', '\u0085'])
      expect(refusal(() => parseLabelChanges([`site=a${control}b`])).message).toMatch(/control character/);
    // Commas, spaces and other printable text are values like any other: a rule's `in` reads a list.
    expect(parseLabelChanges(['sites=berlin, paris', 'note=5 °C'])).toMatchObject({ set: { sites: 'berlin, paris', note: '5 °C' } });
  });

  it('refuses an argument that is neither, and a name given twice', () => {
    expect(refusal(() => parseLabelChanges(['site'])).message).toBe(
      '"site" is not a label change: write name=value to set a label (site=berlin), or name- to remove one (site-)',
    );
    expect(refusal(() => parseLabelChanges(['site=a', 'site-'])).message).toMatch(/label site is given more than once/);
    expect(refusal(() => parseLabelChanges(['site=a', 'site=b'])).message).toMatch(/more than once/);
  });

  it('merges a change into the current labels, names in order, and bounds how many an agent has', () => {
    const merged = mergeLabels('pi-1', { site: 'berlin', line: '3' }, { set: { site: 'paris', zone: 'b' }, unset: ['line', 'never'] });
    expect(Object.keys(merged)).toEqual(['site', 'zone']);
    expect(merged).toEqual({ site: 'paris', zone: 'b' });

    const full = Object.fromEntries(Array.from({ length: MAX_LABELS }, (_, i) => [`l${i}`, 'x']));
    expect(Object.keys(mergeLabels('pi-1', {}, { set: full, unset: [] }))).toHaveLength(64);
    expect(refusal(() => mergeLabels('pi-1', full, { set: { one: 'more' }, unset: [] })).message).toBe(
      'agent pi-1 would have 65 labels: at most 64 are allowed; remove some (name-) in the same command',
    );
    expect(Object.keys(mergeLabels('pi-1', full, { set: { one: 'more' }, unset: ['l0'] }))).toHaveLength(64);
    // The store's own checks: what it is given did not necessarily come through parseLabelChanges.
    expect(() => mergeLabels('pi-1', {}, { set: { Bad: 'x' }, unset: [] })).toThrow(/invalid/);
    expect(() => mergeLabels('pi-1', {}, { set: { ok: '' }, unset: [] })).toThrow(/no value/);
  });

  it('keeps names like constructor and toString as ordinary labels; names start with a letter or digit', () => {
    const merged = mergeLabels('pi-1', {}, parseLabelChanges(['constructor=x', 'tostring=y']));
    expect(Object.entries(merged)).toEqual([
      ['constructor', 'x'],
      ['tostring', 'y'],
    ]);
    expect(mergeLabels('pi-1', {}, { set: {}, unset: [] }).constructor).toBeUndefined(); // a label it lacks is not found
    expect(JSON.parse(JSON.stringify(merged))).toEqual(merged);
    // "name-" removes a label; a name starting with "-" or "." would read as an option or hide.
    expect(() => parseLabelChanges(['__proto__=x'])).toThrow(/starting with a letter or digit/);
    expect(() => parseLabelChanges(['-x=1'])).toThrow(/starting with a letter or digit/);
    expect(() => parseLabelChanges(['site= berlin'])).toThrow(/starts or ends with a space: write site=berlin/);
  });

  it('formats labels for a table, quoting values with spaces or quotes', () => {
    expect(formatLabels({ line: '3', note: 'two words', sites: 'a,b', q: 'say "hi"' })).toBe(
      'line=3 note="two words" sites=a,b q="say \\"hi\\""',
    );
    expect(formatLabels({})).toBe('');
  });
});
