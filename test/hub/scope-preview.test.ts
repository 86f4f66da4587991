import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AccessControl } from '../../hub/access.js';
import { parseHubConfig, scopeRules, type HubConfig } from '../../hub/config.js';
import { previewScopes, type PreviewDevice, type PreviewDocument, type Tally } from '../../hub/scope-preview.js';

const SITES = ['berlin', 'paris', 'rome'];
const IDS = ['pi-1', 'pi-2', 'pi-3', 'pi-4'];

/** Scopes a config may give collection `c` (undefined: whole). */
const SCOPES = [
  undefined,
  { key: '{agent}/' },
  { field: 'site', equals: '{label.site}' },
  { field: 'site', in: '{label.sites}' },
  [{ field: 'site', equals: '{group}' }, { key: '{agent}/' }],
  { key: 'shared/' },
];

const configArb = fc.record({
  scope: fc.constantFrom(...SCOPES),
  readers: fc.constantFrom<string[]>(['*'], ['group:berlin'], ['pi-1', 'pi-2']),
  berlin: fc.subarray(IDS),
});

function config(c: { scope: unknown; readers: string[]; berlin: string[] }): HubConfig {
  return parseHubConfig({
    collections: { c: c.scope === undefined ? {} : { scope: c.scope }, other: {} },
    access: { groups: { berlin: c.berlin }, default: { read: c.readers, write: [] } },
  });
}

const documentArb = fc.record({
  key: fc.oneof(fc.constantFrom(...IDS.map((id) => `${id}/cfg`), 'shared/notice', 'loose'), fc.stringMatching(/^[a-z0-9/-]{1,8}$/)),
  // Lists, and values holding the separators a bucket set could be joined with.
  site: fc.option(fc.oneof(fc.constantFrom(...SITES, 'berlin\n"],["paris', 'x\u0000y'), fc.subarray(SITES, { minLength: 1 })), {
    nil: undefined,
  }),
  bytes: fc.integer({ min: 1, max: 1000 }),
});

const deviceArb = fc.record({
  agentId: fc.constantFrom(...IDS),
  site: fc.option(fc.constantFrom(...SITES), { nil: undefined }),
  sites: fc.subarray(SITES),
});

/** The same question answered the slow way: every document against every device. */
function bruteForce(before: HubConfig, after: HubConfig, devices: PreviewDevice[], byCollection: Record<string, PreviewDocument[]>) {
  const docs = Object.entries(byCollection).flatMap(([c, list]) => list.map((d) => ({ ...d, c })));
  const holds = (config: HubConfig, device: PreviewDevice, doc: PreviewDocument & { c: string }): boolean => {
    if (!new AccessControl(config.access, false).mayRead(device.agentId, doc.c)) return false;
    const rules = scopeRules(config.collections);
    if (!rules.scoped(doc.c)) return true;
    const groups = Object.entries(config.access.groups)
      .filter(([, members]) => members.includes(device.agentId))
      .map(([g]) => g);
    return rules.holds(doc.c, doc.key, doc.value, new Set(rules.bucketsOfDevice(doc.c, { ...device, groups })));
  };
  const tally = (list: readonly PreviewDocument[]): Tally => ({ documents: list.length, bytes: list.reduce((n, d) => n + d.bytes, 0) });
  return devices.map((device) => ({
    before: tally(docs.filter((d) => holds(before, device, d))),
    after: tally(docs.filter((d) => holds(after, device, d))),
    entered: tally(docs.filter((d) => holds(after, device, d) && !holds(before, device, d))),
    left: tally(docs.filter((d) => holds(before, device, d) && !holds(after, device, d))),
  }));
}

async function* each<T>(items: T[]): AsyncIterable<T> {
  for (const item of items) yield item;
}

describe('scope preview', () => {
  it('says per device what would enter and leave its scope, as checking every document against every device does', async () => {
    await fc.assert(
      fc.asyncProperty(
        configArb,
        configArb,
        fc.uniqueArray(deviceArb, { selector: (d) => d.agentId, maxLength: 4 }),
        fc.uniqueArray(documentArb, { selector: (d) => d.key, maxLength: 30 }),
        async (b, a, devs, documents) => {
          const [before, after] = [config(b), config(a)];
          const devices: PreviewDevice[] = devs.map((d) => ({
            agentId: d.agentId,
            labels: { ...(d.site !== undefined && { site: d.site }), ...(d.sites.length > 0 && { sites: d.sites.join(',') }) },
          }));
          const docs: PreviewDocument[] = documents.map((d) => ({
            key: d.key,
            value: d.site === undefined ? {} : { site: d.site },
            bytes: d.bytes,
          }));
          const byCollection: Record<string, PreviewDocument[]> = { c: docs, other: [{ key: 'o', value: 1, bytes: 5 }] };
          const reads: string[] = [];
          const preview = await previewScopes({
            before,
            after,
            devices,
            collections: ['c', 'other'],
            documents: (c) => {
              reads.push(c);
              return each(byCollection[c]!);
            },
          });
          // Only the collections that may move are counted, and each is read once, whatever the number of devices.
          const affected = Object.fromEntries(preview.collections.map((c) => [c, byCollection[c]!]));
          const expected = bruteForce(before, after, devices, affected);
          preview.devices.forEach((d, i) => expect({ ...d }).toEqual({ ...devices[i], ...expected[i] }));
          expect(reads).toEqual(preview.collections);
          // A collection whole under both configs moves only if who may read it changes.
          const readersChanged = devices.some(
            (d) =>
              new AccessControl(before.access, false).mayRead(d.agentId, 'other') !==
              new AccessControl(after.access, false).mayRead(d.agentId, 'other'),
          );
          expect(preview.collections.includes('other')).toBe(readersChanged);
          expect(preview.collections.includes('c')).toBe(b.scope !== undefined || a.scope !== undefined || readersChanged);
          // Nothing moves in the collections left out.
          const all = bruteForce(before, after, devices, byCollection);
          all.forEach((d, i) => expect([d.entered, d.left]).toEqual([expected[i]!.entered, expected[i]!.left]));
          const sum = (key: 'entered' | 'left'): number => expected.reduce((n, d) => n + d[key].documents, 0);
          expect([preview.total.entered.documents, preview.total.left.documents]).toEqual([sum('entered'), sum('left')]);
        },
      ),
      { numRuns: 150 },
    );
  });
});
