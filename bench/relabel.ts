/**
 * What a relabel moves: the bytes a device receives when it moves from one site to another,
 * against the bytes a fresh device of the new site receives syncing from nothing (the full
 * re-sync the move would be without scopes that know what the device holds).
 *
 * A hub in this process (dev mode) scopes `sites` by `{ field: site, equals: "{label.site}" }`
 * and holds 10,000 documents (quick 1,000) in each of berlin and paris, half of them in both
 * (`site: ['berlin', 'paris']`). A full agent labelled berlin syncs berlin; it is relabelled
 * paris: it should receive paris's half it lacks and evict berlin's own half, keeping what both
 * share. Bytes are counted from the hub to each device at a TCP proxy in front of it (MQTT
 * framing included): for the move, from the relabel until the device holds exactly paris; for
 * the fresh device, from its connection until it holds the same. The documents the hub sent
 * each in answer to its pulls are counted too, to tell what the bytes carried.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Agent } from '../agent/agent.js';
import { parseHubConfig } from '../hub/config.js';
import { Hub } from '../hub/hub.js';
import { FaultProxy } from '../test/chaos/fault-proxy.js';
import { sleep, until } from './stats.js';
import { tempDir } from './temp.js';

export interface RelabelResult {
  /** Documents of each site; `shared` of them are in both. */
  perSite: number;
  shared: number;
  /** Bytes from the hub to the relabelled device for the move, and to a fresh device of the new site. */
  moveBytes: number;
  freshBytes: number;
  /** Documents the hub sent each in answer to its pulls (snapshots and log pages); the move needs `perSite - shared`. */
  moveDocs: number;
  freshDocs: number;
  moveSeconds: number;
  freshSeconds: number;
}

const CONFIG = parseHubConfig({ collections: { sites: { scope: { field: 'site', equals: '{label.site}' } } } });
/** Trailing messages (acks of status reports, the hub's status) after a device holds what it should. */
const SETTLE_MS = 300;

/** A site's document: what a device there needs to know of one of its sensors. */
const doc = (i: number, site: string | string[]): Record<string, unknown> => ({
  site,
  name: `sensor-${i}`,
  kind: i % 3 === 0 ? 'temperature' : 'humidity',
  limits: { min: i % 10, max: 50 + (i % 40) },
  calibratedAt: 1_764_000_000_000 + i * 60_000,
});

/** Which keys of `sites` a device holds, page by page. */
async function heldKeys(agent: Agent): Promise<Set<string>> {
  const keys = new Set<string>();
  for (let page = await agent.list('sites', { limit: 1000 }); page.length > 0;) {
    for (const d of page) keys.add(d.key);
    page = await agent.list('sites', { limit: 1000, after: page.at(-1)!.key });
  }
  return keys;
}

const holdsExactly = async (agent: Agent, expected: ReadonlySet<string>): Promise<boolean> => {
  const held = await heldKeys(agent);
  return held.size === expected.size && [...held].every((k) => expected.has(k));
};

/** Commits the documents in group commits of up to 1,000. */
async function seed(hub: Hub, docs: ReadonlyArray<[string, Record<string, unknown>]>): Promise<void> {
  for (let from = 0; from < docs.length; from += 1000) {
    await Promise.all(docs.slice(from, from + 1000).map(([k, v]) => hub.core.write({ c: 'sites', k, op: 'put', v })));
  }
}

export async function benchRelabel(quick: boolean): Promise<RelabelResult> {
  const perSite = quick ? 1_000 : 10_000;
  const shared = perSite / 2;
  const docs: Array<[string, Record<string, unknown>]> = [];
  for (let i = 0; i < perSite - shared; i++) docs.push([`berlin-${i}`, doc(i, 'berlin')], [`paris-${i}`, doc(i, 'paris')]);
  for (let i = 0; i < shared; i++) docs.push([`both-${i}`, doc(i, ['berlin', 'paris'])]);
  const berlin = new Set(docs.filter(([k]) => !k.startsWith('paris-')).map(([k]) => k));
  const paris = new Set(docs.filter(([k]) => !k.startsWith('berlin-')).map(([k]) => k));

  const dir = tempDir('bench-relabel');
  const hub = await Hub.start({ dev: true, config: CONFIG, port: 0, host: '127.0.0.1', dataDir: join(dir, 'hub') });
  const proxies: FaultProxy[] = [];
  const agents: Agent[] = [];
  const device = async (agentId: string): Promise<{ agent: Agent; proxy: FaultProxy }> => {
    const proxy = await FaultProxy.start({ host: '127.0.0.1', port: hub.port });
    proxies.push(proxy);
    const agent = new Agent({
      hubUrl: `mqtt://127.0.0.1:${proxy.port}`,
      agentId,
      dataDir: join(dir, agentId),
      collections: ['sites'],
      reconnect: { initialMs: 50, maxMs: 500 },
    }).start();
    agents.push(agent);
    return { agent, proxy };
  };
  const sent = new Map<string, number>();
  hub.core.on('pull', (agentId, _pull, [kind, answer]) => {
    const docs = kind === 'snapshot' ? answer.docs.length : answer.changes.length;
    sent.set(agentId, (sent.get(agentId) ?? 0) + docs);
  });
  try {
    await hub.registry.setLabels('pi-move', { site: 'berlin' }, []);
    await hub.registry.setLabels('pi-fresh', { site: 'paris' }, []);
    await until('the labels loaded', () => hub.labelsOf('pi-fresh').site === 'paris', 10_000);
    await seed(hub, docs);

    const mover = await device('pi-move');
    await until('pi-move to hold berlin', () => holdsExactly(mover.agent, berlin), 300_000, 200);
    await sleep(SETTLE_MS);
    const before = mover.proxy.bytesDown;
    const docsBefore = sent.get('pi-move') ?? 0;
    const relabelled = performance.now();
    await hub.registry.setLabels('pi-move', { site: 'paris' }, []);
    await until('pi-move to hold paris', () => holdsExactly(mover.agent, paris), 300_000, 100);
    const moveSeconds = (performance.now() - relabelled) / 1000;
    await sleep(SETTLE_MS);
    const moveBytes = mover.proxy.bytesDown - before;
    const moveDocs = (sent.get('pi-move') ?? 0) - docsBefore;

    const started = performance.now();
    const fresh = await device('pi-fresh');
    await until('pi-fresh to hold paris', () => holdsExactly(fresh.agent, paris), 300_000, 100);
    const freshSeconds = (performance.now() - started) / 1000;
    await sleep(SETTLE_MS);
    return {
      perSite,
      shared,
      moveBytes,
      freshBytes: fresh.proxy.bytesDown,
      moveDocs,
      freshDocs: sent.get('pi-fresh') ?? 0,
      moveSeconds,
      freshSeconds,
    };
  } finally {
    await Promise.all(agents.map((a) => a.close()));
    await Promise.all(proxies.map((p) => p.close()));
    await hub.stop();
  }
}

/** Alone, for the full figures: `npx tsx bench/relabel.ts` (`--quick` for the smoke run's sizes). */
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${JSON.stringify(await benchRelabel(process.argv.includes('--quick')), null, 2)}\n`);
  process.exit(0);
}
