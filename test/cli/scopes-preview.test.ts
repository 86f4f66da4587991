import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeCbor } from '../../shared/codec.js';
import { parseHubConfig } from '../../hub/config.js';
import { HubCore } from '../../hub/core.js';
import { Hub } from '../../hub/hub.js';
import { sqliteDirOf } from '../../hub/store/open-store.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import type { ScopePreview } from '../../hub/scope-preview.js';
import { outpost, runOutpost } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';

describe('outpost hub scopes preview', () => {
  it('prints per device what a new config would move into and out of its scope, from the hub database, before anything changes', async () => {
    const dir = tempDir('preview');
    const data = join(dir, 'hub');
    // A hub serving whole collections today: 10 devices' config documents, orders of three sites.
    const hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: data, dev: true });
    const config: Record<string, unknown> = {};
    for (let i = 1; i <= 10; i++) await hub.core.write({ c: 'config', k: `pi-${i}/limits`, op: 'put', v: (config[i] = { max: i }) });
    const orders = [
      { k: 'o1', v: { site: 'berlin', n: 1 } },
      { k: 'o2', v: { site: 'berlin', n: 2 } },
      { k: 'o3', v: { site: 'paris', n: 3 } },
      { k: 'o4', v: { site: 'rome', n: 4 } },
    ];
    for (const o of orders) await hub.core.write({ c: 'orders', k: o.k, op: 'put', v: o.v });
    await hub.stop();
    outpost(['hub', 'agents', 'add', 'pi-1', '--label', 'site=berlin', '--data', data]);
    outpost(['hub', 'agents', 'add', 'pi-2', '--label', 'site=paris', '--data', data]);
    outpost(['hub', 'agents', 'label', 'pi-3', 'sites=berlin,rome', '--data', data]); // labels only
    outpost(['hub', 'agents', 'add', 'pi-4', '--label', 'site=rome', '--data', data]);
    outpost(['hub', 'agents', 'revoke', 'pi-4', '--data', data]); // revoked: it cannot connect, and is left out
    const next = join(dir, 'next.yaml');
    writeFileSync(
      next,
      [
        'access:',
        '  default: { read: ["*"], write: ["*"] }',
        'collections:',
        '  config:',
        '    scope: { key: "{agent}/" }',
        '  orders:',
        '    scope:',
        '      - { field: site, equals: "{label.site}" }',
        '      - { field: site, in: "{label.sites}" }',
      ].join('\n'),
    );
    const preview = JSON.parse(outpost(['hub', 'scopes', 'preview', '--config', next, '--data', data, '--json'])) as ScopePreview;
    const bytes = (values: unknown[]): number => values.reduce<number>((n, v) => n + encodeCbor(v).length, 0);
    const configOf = (i: number): number => bytes([config[i]]);
    const allConfig = bytes(Object.values(config));
    const allOrders = bytes(orders.map((o) => o.v));
    const byId = Object.fromEntries(preview.devices.map((d) => [d.agentId, d]));
    expect(Object.keys(byId)).toEqual(['pi-1', 'pi-2', 'pi-3']);
    // pi-1 keeps its own config document and berlin's two orders; the rest leaves.
    expect(byId['pi-1']!.after).toEqual({ documents: 3, bytes: configOf(1) + bytes([orders[0]!.v, orders[1]!.v]) });
    expect(byId['pi-1']!.left).toEqual({ documents: 11, bytes: allConfig + allOrders - byId['pi-1']!.after.bytes });
    expect(byId['pi-1']!.entered).toEqual({ documents: 0, bytes: 0 });
    expect(byId['pi-2']!.after.documents).toBe(2); // its config, paris's order
    expect(byId['pi-3']!.after.documents).toBe(4); // its config, berlin's and rome's orders
    expect(byId['pi-3']!.labels).toEqual({ sites: 'berlin,rome' });
    expect(preview.collections.sort()).toEqual(['config', 'orders']);
    expect(preview.total.left.documents).toBe(11 + 12 + 10);
    // The text form says the same, one line per device.
    const text = outpost(['hub', 'scopes', 'preview', '--config', next, '--data', data]);
    expect(text).toMatch(/^AGENT\s+LABELS\s+HOLDS NOW\s+WOULD HOLD\s+ENTER\s+LEAVE/);
    expect(text).toMatch(/pi-1\s+site=berlin\s+14 \(.*\)\s+3 \(.*\)\s+\+0 \(0 B\)\s+-11 /);
    expect(text).toContain('3 devices; collections that may move: config, orders; in total 0 (0 B) would enter and 33');
    // A wrong rule is refused before anything is read, naming the option.
    writeFileSync(next, 'collections:\n  config:\n    scope: { key: "{device}/" }\n');
    const refused = runOutpost(['hub', 'scopes', 'preview', '--config', next, '--data', data]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/collections\.config\.scope\.key: unknown placeholder \{device\}/);
  });

  it("reads each collection from its partition's database", async () => {
    const dir = tempDir('preview-partitions');
    const data = join(dir, 'hub');
    const partitions = { billing: ['orders'] };
    const config = parseHubConfig({ partitions });
    const write = async (partition: string, c: string, k: string, v: unknown): Promise<void> => {
      const core = new HubCore({
        store: new SqliteHubStore(sqliteDirOf(data, partition)),
        config,
        partition,
        dev: true,
        publish: () => {},
      });
      core.start();
      await core.write({ c, k, op: 'put', v });
      await core.stop();
    };
    await write('default', 'config', 'pi-1/limits', { max: 1 });
    await write('default', 'config', 'pi-2/limits', { max: 2 });
    await write('billing', 'orders', 'o1', { site: 'berlin' });
    await write('billing', 'orders', 'o2', { site: 'paris' });
    outpost(['hub', 'agents', 'add', 'pi-1', '--label', 'site=berlin', '--data', data]);
    outpost(['hub', 'agents', 'add', 'pi-2', '--label', 'site=paris', '--data', data]);
    const next = join(dir, 'next.yaml');
    writeFileSync(
      next,
      [
        'access:',
        '  default: { read: ["*"], write: ["*"] }',
        'partitions: { billing: [orders] }',
        'collections:',
        '  config: { scope: { key: "{agent}/" } }',
        '  orders: { scope: { field: site, equals: "{label.site}" } }',
      ].join('\n'),
    );
    const preview = JSON.parse(outpost(['hub', 'scopes', 'preview', '--config', next, '--data', data, '--json'])) as ScopePreview;
    expect(preview.collections.sort()).toEqual(['config', 'orders']);
    for (const device of preview.devices) {
      expect(device.before.documents).toBe(4);
      expect(device.after.documents).toBe(2); // its config, its site's order
      expect(device.left.documents).toBe(2);
    }
  });
});
