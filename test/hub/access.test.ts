import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import type { Rejection } from '../../agent/store/rejections.js';
import { parseHubConfig } from '../../hub/config.js';
import { hashToken } from '../../hub/credentials.js';
import { Hub } from '../../hub/hub.js';
import { topics } from '../../shared/topics.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

describe('access control per collection, deny by default', () => {
  let hub: Hub | undefined;
  const agents: Agent[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await hub?.stop();
  });

  it('lets agents write and read only what the config grants, as op outcomes and filtered feeds', async () => {
    const dir = tempDir('access');
    hub = await Hub.start({
      port: 0,
      host: '127.0.0.1',
      dataDir: join(dir, 'hub'),
      config: parseHubConfig({
        access: {
          groups: { kitchen: ['pi-cook'] },
          collections: { sensors: { read: ['*'], write: ['group:kitchen'] }, secrets: { read: ['pi-vault'], write: ['pi-vault'] } },
          default: { read: ['*'], write: [] },
        },
      }),
    });
    const url = `mqtt://127.0.0.1:${hub.port}`;
    for (const id of ['pi-cook', 'pi-vault', 'pi-guest']) await hub.store.putCredential(id, await hashToken(`t-${id}`));
    const open = (id: string): Agent => {
      const agent = new Agent({ hubUrl: url, agentId: id, hubToken: `t-${id}`, dataDir: join(dir, id) }).start();
      agents.push(agent);
      return agent;
    };
    const cook = open('pi-cook');
    const vault = open('pi-vault');
    const guest = open('pi-guest');

    expect((await cook.put('sensors', 'oven', { celsius: 200 }, { durability: 'hub' })).lsn).toBe(1);
    await expect(guest.put('sensors', 'oven', { celsius: 0 }, { durability: 'hub' })).rejects.toMatchObject({
      code: 'OUTPOST_WRITE_REJECTED',
      reason: 'forbidden',
    });
    const rejected = new Promise<Rejection[]>((resolve) => guest.once('rejection', resolve));
    await guest.put('notes', 'n', 1); // undeclared: default grants no writes
    expect(await rejected).toMatchObject([{ collection: 'notes', outcome: 'rejected', reason: 'forbidden' }]);
    const secret = await vault.put('secrets', 'code', { pin: 1234 }, { durability: 'hub' });

    // Reading: everyone sees sensors; only the vault sees secrets, live or by pull. `minLsn`
    // waits until a device has applied the log past the secret (a pull moves it there).
    await waitFor('guest reads the oven', () => guest.get('sensors', 'oven'));
    expect(await vault.get('secrets', 'code')).toBeDefined();
    await guest.get('sensors', 'oven', { minLsn: secret.lsn! });
    await cook.get('sensors', 'oven', { minLsn: secret.lsn! });
    expect(await guest.get('secrets', 'code')).toBeUndefined();
    expect(await cook.get('secrets', 'code')).toBeUndefined();
    await guest.close();
    const again = open('pi-guest'); // restarts and pulls from its watermark
    await waitFor('reconnected', () => again.status().connected);
    // Written while it listens: a secret, then something it may read; once it has applied the
    // latter, the secret has passed it by, live and by pull.
    await vault.put('secrets', 'code2', { pin: 5678 }, { durability: 'hub' });
    const after = await cook.put('sensors', 'hall', { celsius: 19 }, { durability: 'hub' });
    await again.get('sensors', 'hall', { minLsn: after.lsn! });
    expect(await again.get('sensors', 'hall')).toBeDefined();
    expect(await again.get('secrets', 'code')).toBeUndefined();
    expect(await again.get('secrets', 'code2')).toBeUndefined();
    expect(await again.get('sensors', 'oven')).toBeDefined();
  });

  it('refuses an explicit subscription to a collection the agent may not read', async () => {
    const dir = tempDir('access');
    hub = await Hub.start({
      port: 0,
      host: '127.0.0.1',
      dataDir: join(dir, 'hub'),
      config: parseHubConfig({ access: { collections: { secrets: { read: ['pi-vault'] } }, default: { read: ['*'], write: ['*'] } } }),
    });
    await hub.store.putCredential('pi-guest', await hashToken('t'));
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${hub.port}`, {
      clientId: 'pi-guest',
      username: 'pi-guest',
      password: 't',
      reconnectPeriod: 0,
    });
    await expect(client.subscribeAsync(topics.collection('secrets'), { qos: 1 })).rejects.toThrow(/Subscribe error/);
    expect((await client.subscribeAsync(topics.collection('public'), { qos: 1 }))[0]!.qos).toBe(1);
    await client.endAsync();
  });
});
