import { http } from '../helpers/processes.js';
import { sleep } from '../helpers/wait.js';
import type { AcknowledgedWrite, History } from './history.js';
import type { ProcessFleet } from './process-fleet.js';
import { neverSiteOf, ownedKey, SITES, siteKey, sitesOf } from './scope-plan.js';

/** One write a client makes through its agent: what, where, and what the hub must make of it. */
export interface PlannedWrite {
  collection: string;
  key: string;
  /** Absent: a delete. */
  value?: Record<string, unknown>;
  durability: 'local' | 'hub';
  poison: boolean;
  scope?: AcknowledgedWrite['scope'];
}

/** How much of the load goes to each collection; the rest of the roll is poison (1 %). */
const SHARES = [
  ['readings', 0.3],
  ['settings', 0.2],
  ['sites', 0.3],
  ['owned', 0.2],
] as const;
/** Of scoped writes, how many are deliberately outside the agent's scope. */
const OUTSIDE_SHARE = 0.12;

/**
 * The next write of agent `id`'s client. Unscoped collections as before; in `sites`, documents
 * of the agent's own site as last labelled, under keys that name their site (so a document's
 * site never changes under an agent's own writes, and whether the hub may take a write depends
 * on the agent's labels alone); in `owned`, its own keys. A few scoped writes are deliberately
 * outside: a document of the site it is never given, a move of its own document to another
 * site (or into two), another agent's key.
 */
export function nextWrite(id: string, others: readonly string[], site: string | undefined, random: () => number, n: number): PlannedWrite {
  const roll = random();
  if (roll < 0.01)
    return { collection: 'poison', key: `${id}-${Math.floor(random() * 200)}`, value: { by: id, n }, durability: 'local', poison: true };
  const durability = roll > 0.9 ? 'hub' : 'local';
  const del = roll > 0.85 && roll <= 0.9;
  let pick = random();
  const collection = SHARES.find(([, share]) => (pick -= share) < 0)?.[0] ?? 'readings';
  const k = Math.floor(random() * 40);
  if (collection === 'readings' || collection === 'settings' || (collection === 'sites' && site === undefined)) {
    const key = collection === 'settings' ? `s${Math.floor(random() * 10)}` : `${id}-${Math.floor(random() * 200)}`;
    return {
      collection: collection === 'sites' ? 'readings' : collection,
      key,
      ...(!del && { value: { by: id, n } }),
      durability,
      poison: false,
    };
  }
  const outside = random() < OUTSIDE_SHARE;
  if (collection === 'owned') {
    if (!outside) return { collection, key: ownedKey(id, k), ...(!del && { value: { by: id, n } }), durability, poison: false };
    // Another agent's key, put or deleted: neither may reach the hub's log.
    const other = others.length > 0 ? others[Math.floor(random() * others.length)]! : `${id}x`;
    return {
      collection,
      key: ownedKey(other, k),
      ...(!del && { value: { by: id, n } }),
      durability: 'local',
      poison: false,
      scope: 'outside',
    };
  }
  const own = site!;
  if (!outside)
    return { collection, key: siteKey(id, own, k), value: { site: own, by: id, n }, durability, poison: false, scope: 'own-site' };
  // Local durability only: the refusal must come back through the agent's history, not as a failed request.
  const elsewhere = SITES.filter((s) => s !== own);
  const move = random();
  const planned = (key: string, to: string | string[]): PlannedWrite => ({
    collection,
    key,
    value: { site: to, by: id, n },
    durability: 'local',
    poison: false,
    scope: 'outside',
  });
  if (move < 0.4) return planned(siteKey(id, neverSiteOf(id), k), neverSiteOf(id));
  if (move < 0.8) return planned(siteKey(id, own, k), elsewhere[Math.floor(random() * elsewhere.length)]!);
  return planned(siteKey(id, own, k), [own, elsewhere[0]!]);
}

/**
 * The main site's own writes, through the hub's HTTP API as a cloud app makes them: documents
 * of every site, moved between sites (or put in two) now and then, some deleted; and documents
 * of each agent's `owned` keys. Failures while the hub is down are expected and not counted.
 */
export async function hubWriter(
  fleet: ProcessFleet,
  ids: readonly string[],
  history: History,
  random: () => number,
  going: () => boolean,
  everyMs: number,
): Promise<void> {
  let n = 0;
  while (going()) {
    const roll = random();
    let url: string;
    let body: Record<string, unknown> | undefined;
    if (roll < 0.25) {
      const agent = ids[Math.floor(random() * ids.length)]!;
      url = `${fleet.hubUrl}/v1/docs/owned/${encodeURIComponent(ownedKey(agent, 100 + Math.floor(random() * 10)))}`;
      body = roll < 0.05 ? undefined : { by: 'hub', n: n++ };
    } else {
      url = `${fleet.hubUrl}/v1/docs/sites/hub-${Math.floor(random() * 24)}`;
      const site = SITES[Math.floor(random() * SITES.length)]!;
      body =
        roll < 0.3 ? undefined : { site: roll < 0.35 ? [site, SITES[(SITES.indexOf(site) + 1) % SITES.length]!] : site, by: 'hub', n: n++ };
    }
    try {
      const response = await http(body === undefined ? 'DELETE' : 'PUT', url, body);
      if (response.status === 200) history.hubWrites += 1;
    } catch {
      // The hub is down (killed): nothing was committed.
    }
    await sleep(everyMs * (0.5 + random()));
  }
}

/**
 * The hub writes a document into an agent's site and one of its own keys, and one into the
 * site it is never given: while a spy listens as that agent, it must hear the first two (proof
 * that it listens) and never the third.
 */
export async function baitFor(fleet: ProcessFleet, id: string, site: string | undefined): Promise<void> {
  const writes: [string, Record<string, unknown>][] = [
    [`owned/${encodeURIComponent(ownedKey(id, 999))}`, { bait: true, at: Date.now() }],
    [`sites/bait-never-${id}`, { site: neverSiteOf(id), bait: true, at: Date.now() }],
  ];
  if (site !== undefined) writes.push([`sites/bait-${id}`, { site, bait: true, at: Date.now() }]);
  await Promise.all(writes.map(([path, body]) => http('PUT', `${fleet.hubUrl}/v1/docs/${path}`, body).catch(() => undefined)));
}

/** The site an agent is moved to by its next relabel: the other of its two. */
export function nextSiteOf(id: string, current: string | undefined): string {
  const [first, second] = sitesOf(id);
  return current === first ? second : first;
}
