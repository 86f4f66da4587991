import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { Hub } from '../../hub/hub.js';
import { CLI } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

const outpost = (...args: string[]): string =>
  execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

describe('device identity (hub not in --dev mode)', () => {
  let hub: Hub | undefined;
  const agents: Agent[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await hub?.stop();
  });

  async function secureHub(): Promise<{ data: string; url: string }> {
    const data = join(tempDir('identity'), 'hub');
    hub = await Hub.start({
      port: 0,
      host: '127.0.0.1',
      dataDir: data,
      config: parseHubConfig({ access: { default: { read: ['*'], write: ['*'] } } }),
    });
    return { data, url: `mqtt://127.0.0.1:${hub.port}` };
  }

  const connect = (url: string, clientId: string, username?: string, password?: string): Promise<mqtt.MqttClient> =>
    mqtt.connectAsync(url, {
      clientId,
      reconnectPeriod: 0,
      ...(username !== undefined && { username }),
      ...(password !== undefined && { password }),
    });

  it('admits an agent with its token and syncs; stores only a hash of the token', async () => {
    const { data, url } = await secureHub();
    const token = outpost('hub', 'agents', 'add', 'pi-1', '--data', data).trim();
    expect(token).toMatch(/^opt_[A-Za-z0-9_-]{43}$/);
    const agent = new Agent({ hubUrl: url, agentId: 'pi-1', hubToken: token, dataDir: join(data, '..', 'pi-1') }).start();
    agents.push(agent);
    const receipt = await agent.put('notes', 'n', 'hello', { durability: 'hub' });
    expect(receipt.lsn).toBe(1);

    const db = new Database(join(data, 'hub.db'), { readonly: true });
    const stored = db.prepare('SELECT token_hash FROM agent_credentials WHERE agent_id = ?').get('pi-1') as { token_hash: string };
    db.close();
    expect(stored.token_hash).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(stored.token_hash).not.toContain(token.slice(4));
    expect(outpost('hub', 'agents', 'list', '--data', data)).toMatch(/pi-1\s+\S+\s+active/);
  });

  /**
   * How the hub refuses a login that it checks: after a failed login, the address backs off and
   * is refused unchecked ("Server unavailable") for a moment, so this waits that out.
   */
  const refusal = async (url: string, clientId: string, username?: string, password?: string): Promise<string> => {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const error = await connect(url, clientId, username, password).then(
        async (client) => {
          await client.endAsync();
          return new Error('accepted');
        },
        (e: unknown) => e as Error,
      );
      if (!/unavailable/i.test(error.message) || Date.now() > deadline) return error.message;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  it('refuses no credentials, a wrong token, a username that is not the client id, and an unknown id alike', async () => {
    const { data, url } = await secureHub();
    const token = outpost('hub', 'agents', 'add', 'pi-1', '--data', data).trim();
    outpost('hub', 'agents', 'add', 'pi-2', '--data', data);
    expect(await refusal(url, 'pi-1')).toMatch(/Bad username or password/i);
    expect(await refusal(url, 'pi-1', 'pi-1', `${token}x`)).toMatch(/Bad username or password/i);
    expect(await refusal(url, 'pi-2', 'pi-1', token)).toMatch(/Bad username or password/i); // pi-1's token as pi-2
    expect(await refusal(url, 'pi-9', 'pi-9', token)).toMatch(/Bad username or password/i); // never provisioned: no different
    // The right token, from an address still backing off after the failures above: accepted once the backoff lapses.
    expect(await refusal(url, 'pi-1', 'pi-1', token)).toBe('accepted');
  });

  it('revoking an agent from another process closes its live connection and refuses it after', async () => {
    const { data, url } = await secureHub();
    const token = outpost('hub', 'agents', 'add', 'pi-1', '--data', data).trim();
    const client = await connect(url, 'pi-1', 'pi-1', token);
    let closed = false;
    client.on('close', () => (closed = true));
    expect(outpost('hub', 'agents', 'revoke', 'pi-1', '--data', data)).toMatch(/revoked/);
    await waitFor('the live connection closed', () => closed, 3_000);
    await client.endAsync(true);
    expect(await refusal(url, 'pi-1', 'pi-1', token)).toMatch(/Not authorized/i); // only the token's holder learns it is revoked
    // Provisioning again issues a new token; the old one stays dead.
    const fresh = outpost('hub', 'agents', 'add', 'pi-1', '--data', data).trim();
    await waitFor(
      'the new credential is in force',
      async () => {
        try {
          await (await connect(url, 'pi-1', 'pi-1', fresh)).endAsync();
          return true;
        } catch {
          return false;
        }
      },
      3_000,
    );
    expect(await refusal(url, 'pi-1', 'pi-1', token)).toMatch(/Bad username or password/i);
  });
});
