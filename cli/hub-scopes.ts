import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { HubStore } from '../hub/store/hub-store.js';
import { DEFAULT_PARTITION } from '../shared/topics.js';
import { table } from './agent-client.js';

interface PreviewOptions {
  data: string;
  store?: string;
  config: string;
  current?: string;
  json?: boolean;
}

/** Documents read per page while previewing. */
const PAGE = 1_000;

/**
 * `outpost hub scopes preview --config new.yaml`: what deploying a config would move, per device
 * and in total, before anything changes. Compared with `--current` (the config the hub runs
 * with; without it, the same access rules with every collection whole). Devices are those
 * provisioned, and those with labels; their labels are read from the hub's database.
 */
export function addScopeCommands(hub: Command): void {
  const scopes = hub.command('scopes').description('which documents each device holds');
  scopes
    .command('preview')
    .description('per device, the documents and bytes a new config would move into and out of its scope, before it is deployed')
    .requiredOption('--config <file>', 'the hub configuration to deploy')
    .option('--current <file>', 'the configuration the hub runs with (default: the same access rules, every collection whole)')
    .option('--data <dir>', "the hub's data directory (env OUTPOST_DATA)", process.env.OUTPOST_DATA ?? './data/hub')
    .option('--store <url>', "the hub's PostgreSQL store, if it has one (env OUTPOST_STORE)", process.env.OUTPOST_STORE)
    .option('--json', 'machine-readable output')
    .action(async (opts: PreviewOptions) => {
      const [
        { loadHubConfig, partitionOf, partitionsOf },
        { previewScopes },
        { openHubStore, sqliteDirOf },
        { encodeCbor },
        { formatLabels },
      ] = await Promise.all([
        import('../hub/config.js'),
        import('../hub/scope-preview.js'),
        import('../hub/store/open-store.js'),
        import('../shared/codec.js'),
        import('../hub/labels.js'),
      ]);
      const after = loadHubConfig(opts.config);
      const before = opts.current !== undefined ? loadHubConfig(opts.current) : wholeCollections(after);
      // Each collection is read from the partition the hub serves it in now (the default one keeps the agents).
      const stores = new Map<string, HubStore>();
      try {
        for (const partition of partitionsOf(before)) {
          // A partition that never ran has no SQLite file yet, and nothing to move: it is not created here.
          if (opts.store === undefined && partition !== DEFAULT_PARTITION && !existsSync(join(sqliteDirOf(opts.data, partition), 'hub.db')))
            continue;
          stores.set(partition, await openHubStore({ store: opts.store, dataDir: opts.data, partition }));
        }
        const store = stores.get(DEFAULT_PARTITION)!;
        const labels = await store.allLabels();
        // Provisioned devices and those known by their labels (a --dev hub's), but no revoked one: it cannot connect.
        const credentials = await store.credentials();
        const revoked = new Set(credentials.filter((c) => c.revokedAt !== null).map((c) => c.agentId));
        const ids = new Set([...credentials.map((c) => c.agentId), ...labels.keys()].filter((id) => !revoked.has(id)));
        const devices = [...ids].sort().map((agentId) => ({ agentId, labels: labels.get(agentId) ?? {} }));
        const collections: string[] = [];
        for (const [partition, s] of stores) {
          collections.push(...Object.keys(await s.collectionHeads()).filter((c) => partitionOf(before, c) === partition));
        }
        const preview = await previewScopes({
          before,
          after,
          devices,
          collections,
          documents: async function* (collection) {
            const source = stores.get(partitionOf(before, collection))!;
            for (let after: string | undefined; ;) {
              const page = await source.listDocuments(collection, { limit: PAGE, ...(after !== undefined && { after }) });
              for (const doc of page) yield { key: doc.key, value: doc.value, bytes: encodeCbor(doc.value).length };
              if (page.length < PAGE) return;
              after = page[page.length - 1]!.key;
            }
          },
        });
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(preview, null, 2)}\n`);
          return;
        }
        const size = (t: { documents: number; bytes: number }): string => `${t.documents} (${formatBytes(t.bytes)})`;
        const rows = preview.devices.map((d) => [
          d.agentId,
          formatLabels(d.labels),
          size(d.before),
          size(d.after),
          `+${size(d.entered)}`,
          `-${size(d.left)}`,
        ]);
        process.stdout.write(`${table([['AGENT', 'LABELS', 'HOLDS NOW', 'WOULD HOLD', 'ENTER', 'LEAVE'], ...rows])}\n`);
        process.stdout.write(
          `\n${preview.devices.length} devices; collections that may move: ${preview.collections.join(', ') || 'none'}; in total ${size(preview.total.entered)} would enter and ${size(preview.total.left)} leave.\n`,
        );
      } finally {
        for (const store of stores.values()) await store.close();
      }
    });
}

/** The config with every collection whole: what a hub serves before scopes are deployed. */
function wholeCollections<T extends { collections: Record<string, { scope?: unknown }> }>(config: T): T {
  return {
    ...config,
    collections: Object.fromEntries(Object.entries(config.collections).map(([name, { scope: _scope, ...c }]) => [name, c])),
  };
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
