import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseHubConfig } from '../../hub/config.js';
import { Hub } from '../../hub/hub.js';
import { HubCore } from '../../hub/core.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { ScopeRules, type ScopeSubject } from '../../hub/scope-rules.js';
import { tempDir } from '../helpers/temp.js';

const device = (agentId: string, labels: Record<string, string> = {}, groups: string[] = []): ScopeSubject => ({ agentId, labels, groups });

describe('scope rules', () => {
  const rules = new ScopeRules({
    config: { key: '{agent}/' },
    sites: { field: 'site', equals: '{label.site}' },
    orders: [
      { field: 'site', in: '{label.sites}' },
      { field: 'owner', equals: '{agent}' },
    ],
    teams: { field: 'meta.team', equals: 'team-{group}' },
    shared: { key: 'public/' },
  });

  it('puts a document in the buckets its key or fields give, and a device in those its id, labels and groups give', () => {
    expect(rules.bucketsOfDocument('config', 'pi-1/limits', { max: 3 })).toEqual(['config|k|{agent}/|pi-1']);
    expect(rules.bucketsOfDevice('config', device('pi-1'))).toEqual(['config|k|{agent}/|pi-1']);
    expect(rules.bucketsOfDocument('config', 'limits', {})).toEqual([]); // no "/": nobody's
    expect(rules.bucketsOfDocument('sites', 's1', { site: 'berlin' })).toEqual(['sites|f|site|berlin']);
    expect(rules.bucketsOfDevice('sites', device('pi-1', { site: 'berlin' }))).toEqual(['sites|f|site|berlin']);
    expect(rules.bucketsOfDevice('sites', device('pi-1'))).toEqual([]); // no label: holds nothing
    // A label value containing a key template's delimiter could only match another value's keys: it holds nothing.
    const byZone = new ScopeRules({ z: { key: '{label.zone}/' } });
    expect(byZone.bucketsOfDocument('z', 'eu/berlin/x', 1)).toEqual(['z|k|{label.zone}/|eu']);
    expect(byZone.bucketsOfDevice('z', device('pi-1', { zone: 'eu/berlin' }))).toEqual([]);
    expect(byZone.bucketsOfDevice('z', device('pi-1', { zone: 'eu' }))).toEqual(['z|k|{label.zone}/|eu']);
    const named = new ScopeRules({ c: { field: 'x', equals: '{label.constructor}' } });
    expect(named.bucketsOfDevice('c', device('pi-1'))).toEqual([]); // not Object's own constructor
    expect(rules.bucketsOfDevice('orders', device('pi-1', { sites: 'berlin, paris' }))).toEqual([
      'orders|f|site|berlin',
      'orders|f|site|paris',
      'orders|f|owner|pi-1',
    ]);
    expect(rules.bucketsOfDocument('orders', 'o1', { site: 'paris', owner: 'pi-9' })).toEqual([
      'orders|f|site|paris',
      'orders|f|owner|pi-9',
    ]);
    expect(rules.bucketsOfDevice('teams', device('pi-1', {}, ['ops', 'lab']))).toEqual([
      'teams|f|meta.team|team-ops',
      'teams|f|meta.team|team-lab',
    ]);
    expect(rules.bucketsOfDocument('teams', 't', { meta: { team: 'team-lab' } })).toEqual(['teams|f|meta.team|team-lab']);
    // A literal template names the same documents for every device.
    expect(rules.bucketsOfDevice('shared', device('pi-7'))).toEqual(['shared|k|public/|']);
    expect(rules.bucketsOfDocument('shared', 'public/notice', 1)).toEqual(['shared|k|public/|']);
    expect(rules.bucketsOfDocument('shared', 'private/notice', 1)).toEqual([]);
    // Arrays put a document in each of their values' buckets; other values in none.
    expect(rules.bucketsOfDocument('sites', 's2', { site: ['berlin', 3, { x: 1 }] })).toEqual(['sites|f|site|berlin', 'sites|f|site|3']);
    expect(rules.bucketsOfDocument('sites', 's3', { site: null })).toEqual([]);
    expect(rules.bucketsOfDocument('sites', 's4', undefined)).toEqual([]);
    // An unscoped collection has no buckets at all.
    expect(rules.scoped('logs')).toBe(false);
    expect(rules.bucketsOfDocument('logs', 'x', {})).toEqual([]);
  });

  it('refuses rules it cannot follow, naming the option', () => {
    expect(() => new ScopeRules({ a: { key: '{agent}{agent}' } })).toThrow(/collections\.a\.scope\.key: .*more than one placeholder/);
    expect(() => new ScopeRules({ a: { key: '{device}/' } })).toThrow(/unknown placeholder \{device\}/);
    expect(() => new ScopeRules({ a: [{ field: 'x', equals: '{label.Site!}' }] })).toThrow(
      /collections\.a\.scope\[0\]\.equals: unknown placeholder/,
    );
    expect(() => new ScopeRules({ a: { field: 'x|y', equals: '{agent}' } })).toThrow(/may not contain "\|"|not a field name/);
    expect(() => new ScopeRules({ a: { key: '' } })).toThrow(/give a template/);
    expect(() => new ScopeRules({ a: [] })).toThrow(/at least one rule/);
    expect(() => new ScopeRules({ a: { key: '{agent/' } })).toThrow(/brace/);
    expect(() => new ScopeRules({ a: { key: '{agent}-' } })).toThrow(
      /text after \{agent\} must start with a character agent ids cannot contain/,
    );
    expect(() => new ScopeRules({ a: { key: 'x.{agent}.y' } })).toThrow(/text after \{agent\}/);
  });

  it('a document is in the scope of exactly the devices whose id, label or group it names', () => {
    const id = fc.stringMatching(/^[a-z0-9-]{1,12}$/);
    fc.assert(
      fc.property(id, id, fc.stringMatching(/^[a-z0-9/-]{0,12}$/), fc.array(id, { maxLength: 3 }), (agent, other, rest, sites) => {
        const mine = device(agent, { site: sites[0] ?? agent, sites: sites.join(',') }, sites);
        const theirs = device(other, { site: `${other}x`, sites: `${other}x` }, [`${other}x`]);
        const mineBuckets = (c: string): Set<string> => new Set(rules.bucketsOfDevice(c, mine));
        const theirBuckets = (c: string): Set<string> => new Set(rules.bucketsOfDevice(c, theirs));
        const key = `${agent}/${rest}`;
        expect(rules.holds('config', key, {}, mineBuckets('config'))).toBe(true);
        expect(rules.holds('config', key, {}, theirBuckets('config'))).toBe(agent === other);
        const site = sites[0] ?? agent;
        expect(rules.holds('sites', 'k', { site }, mineBuckets('sites'))).toBe(true);
        expect(rules.holds('sites', 'k', { site }, theirBuckets('sites'))).toBe(site === `${other}x`);
        for (const s of sites) expect(rules.holds('orders', 'k', { site: s, owner: 'nobody' }, mineBuckets('orders'))).toBe(true);
        expect(rules.holds('orders', 'k', { site: 'none-such', owner: agent }, mineBuckets('orders'))).toBe(true);
      }),
    );
  });

  it('the hub config names the scope option a wrong rule is in; a scoped collection cannot be served whole again', async () => {
    expect(() => parseHubConfig({ collections: { a: { scope: { key: '{x}/' } } } })).toThrow(
      /hub config: collections\.a\.scope\.key: unknown placeholder/,
    );
    expect(() => parseHubConfig({ collections: { a: { scope: { field: 'x' } } } })).toThrow(/collections\.a\.scope: a rule is/);
    expect(() => parseHubConfig({ collections: { a: { scope: { kee: 'x' } } } })).toThrow(/scope/);
    const config = parseHubConfig({ collections: { a: { scope: [{ key: '{agent}/' }, { field: 'site', in: '{label.sites}' }] } } });
    expect(config.collections.a!.scope).toHaveLength(2);
    const dataDir = tempDir('scoped');
    const hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir, dev: true, config });
    await hub.stop();
    // Served scoped, a collection cannot be served whole again: its devices hold only their scope of it.
    await expect(Hub.start({ port: 0, host: '127.0.0.1', dataDir, dev: true, config: parseHubConfig({}) })).rejects.toThrow(
      /collections\.a: this hub's database serves it scoped, and serving it whole again is not supported yet/,
    );
  });

  it("each partition's hub keeps the scopes of its own collections only", async () => {
    const config = parseHubConfig({
      collections: { a: { scope: { key: '{agent}/' } }, b: { scope: { key: '{agent}/' } }, c: {} },
      partitions: { p: ['b', 'c'] },
    });
    const cores = ['default', 'p'].map(
      (partition) => new HubCore({ store: new SqliteHubStore(tempDir('own')), config, partition, dev: true, publish: () => {} }),
    );
    try {
      await Promise.all(cores.map((core) => core.prepare()));
      expect(cores.map((core) => core.scopes.directory.collections)).toEqual([['a'], ['b']]);
    } finally {
      await Promise.all(cores.map((core) => core.stop()));
    }
  });
});
