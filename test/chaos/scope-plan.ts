import { createHash } from 'node:crypto';

/**
 * The soak's scoped collections and who may see what of them, written out on their own so that
 * the checker judges delivery without the hub's scope code:
 * - `sites`, scoped by `{ field: site, equals: "{label.site}" }`: each agent is labelled with a
 *   site, and is only ever relabelled between its two sites (`sitesOf`). The third site is never
 *   its own, while other agents and the hub write there all along: a document of it reaching the
 *   agent is outside its scope whatever the timing of moves and relabels.
 * - `owned`, scoped by `{ key: "{agent}/" }`: each agent's own keys, written by it and by the hub.
 */
export const SITES = ['north', 'south', 'east'] as const;
export type Site = (typeof SITES)[number];
export const SCOPED_COLLECTIONS = ['sites', 'owned'] as const;

/** The scoped part of the chaos hub config (YAML lines under `collections:`). */
export const SCOPED_CONFIG_LINES = [
  '  sites:',
  '    scope: { field: site, equals: "{label.site}" }',
  '  owned:',
  '    scope: { key: "{agent}/" }',
];

export function isScoped(collection: string): boolean {
  return (SCOPED_COLLECTIONS as readonly string[]).includes(collection);
}

/** The two sites an agent (`pi-<n>`) is ever labelled with; its first is where it starts. */
export function sitesOf(agentId: string): readonly [Site, Site] {
  const n = Number(/(\d+)$/.exec(agentId)?.[1] ?? 0);
  return [SITES[n % SITES.length]!, SITES[(n + 1) % SITES.length]!];
}

/** Whether an agent is ever labelled with `site`. */
export function mayHoldSite(agentId: string, site: string): boolean {
  return (sitesOf(agentId) as readonly string[]).includes(site);
}

/** The site an agent is never labelled with. */
export function neverSiteOf(agentId: string): Site {
  const [a, b] = sitesOf(agentId);
  return SITES.find((s) => s !== a && s !== b)!;
}

/** An agent's key of a site's document: the site is part of it, so each key always names one site. */
export function siteKey(agentId: string, site: string, n: number): string {
  return `${agentId}-${site}-${n}`;
}

/** A key of an agent's `owned` document. */
export function ownedKey(agentId: string, n: number): string {
  return `${agentId}/${n}`;
}

/** The sites a `sites` document is in: its `site` field, a string or a list of them. */
export function sitesOfValue(value: unknown): string[] {
  const site = value !== null && typeof value === 'object' ? (value as Record<string, unknown>).site : undefined;
  const list = Array.isArray(site) ? site : [site];
  return list.filter((s): s is string => typeof s === 'string');
}

/** Whether a live document is in the scope of an agent labelled `site`. */
export function inScope(collection: string, key: string, value: unknown, agentId: string, site: string | undefined): boolean {
  if (collection === 'owned') return key.startsWith(`${agentId}/`);
  if (collection === 'sites') return site !== undefined && sitesOfValue(value).includes(site);
  return true;
}

/** A bucket's id, by the protocol's naming: 96 bits of the SHA-256 of its name, base64url. */
function bucketId(name: string): string {
  return createHash('sha256').update(name).digest('base64url').slice(0, 16);
}

/**
 * The ids of the buckets an agent labelled `site` holds: a bucket is named
 * `collection|k|template|value` (key rules) or `collection|f|field|value` (field rules).
 */
export function bucketsOf(agentId: string, site: string | undefined): Set<string> {
  const ids = new Set([bucketId(`owned|k|{agent}/|${agentId}`)]);
  if (site !== undefined) ids.add(bucketId(`sites|f|site|${site}`));
  return ids;
}

/** The ids of the buckets an agent may ever hold: those of its two sites and of its own keys. */
export function bucketsEverHeld(agentId: string): Set<string> {
  return new Set(sitesOf(agentId).flatMap((site) => [...bucketsOf(agentId, site)]));
}
