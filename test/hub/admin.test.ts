import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { hashToken } from '../../hub/credentials.js';
import { Hub } from '../../hub/hub.js';
import type { AgentView } from '../../hub/fleet.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

describe('hub admin API and metrics', () => {
  let hub: Hub | undefined;
  const agents: Agent[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await hub?.stop();
    hub = undefined;
  });

  it('refuses to expose the HTTP API beyond loopback without a token', async () => {
    await expect(Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('admin'), http: { host: '0.0.0.0', port: 0 } })).rejects.toThrow(
      /reachable from the network without a token: set --admin-token/,
    );
  });

  it('shows the fleet with lag, outbox and presence, and Prometheus metrics, behind the admin token', async () => {
    const dir = tempDir('admin');
    hub = await Hub.start({
      port: 0,
      host: '127.0.0.1',
      dataDir: join(dir, 'hub'),
      http: { host: '127.0.0.1', port: 0 },
      adminToken: 'adm1n',
      config: parseHubConfig({ access: { default: { read: ['*'], write: ['*'] } } }),
    });
    for (const id of ['pi-1', 'pi-2']) await hub.store.putCredential(id, await hashToken(`token-of-${id}`));
    const open = (id: string): Agent => {
      const agent = new Agent({
        hubUrl: `mqtt://127.0.0.1:${hub!.port}`,
        agentId: id,
        hubToken: `token-of-${id}`,
        dataDir: join(dir, id),
        reconnect: { initialMs: 50, maxMs: 200 },
      }).start();
      agents.push(agent);
      return agent;
    };
    const base = hub.httpAddress!;
    const get = async <T>(path: string, token = 'adm1n'): Promise<{ status: number; body: T }> => {
      const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
      return {
        status: response.status,
        body: (response.headers.get('content-type')?.includes('json') ? await response.json() : await response.text()) as T,
      };
    };

    expect((await fetch(`${base}/v1/agents`)).status).toBe(401);
    expect((await get('/v1/agents', 'wrong')).status).toBe(401);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    const one = open('pi-1');
    const two = open('pi-2');
    await one.put('notes', 'a', 1, { durability: 'hub' });
    await waitFor(
      'pi-2 reported it applied LSN 1',
      async () =>
        (await get<{ agents: AgentView[] }>('/v1/agents')).body.agents.find((a) => a.agentId === 'pi-2')?.collections.notes?.appliedLsn ===
        1,
    );
    await two.close();
    await one.put('notes', 'b', 2, { durability: 'hub' });
    await sleepUntilOffline(async () => (await get<AgentView>('/v1/agents/pi-2')).body.online === false);

    const { body: pi2 } = await get<AgentView>('/v1/agents/pi-2');
    expect(pi2).toMatchObject({
      agentId: 'pi-2',
      online: false,
      provisioned: true,
      revoked: false,
      outboxDepth: 0,
      collections: { notes: { appliedLsn: 1, lagChanges: 1 } },
    });
    expect(pi2.collections.notes!.lagSeconds).toBeGreaterThanOrEqual(0);
    expect(pi2.lastSeen).toBeDefined();
    const { body: pi1 } = await get<AgentView>('/v1/agents/pi-1');
    expect(pi1).toMatchObject({ online: true, address: '127.0.0.1', version: '0.1.0' });
    expect((await get<{ docs: Array<{ key: string }> }>('/v1/docs/notes?prefix=')).body.docs.map((d) => d.key)).toEqual(['a', 'b']);
    expect(Object.values(pi1.lastSeq)).toEqual([2]);
    expect((await get('/v1/agents/pi-9')).status).toBe(404);
    expect((await get<{ collections: object; defaults: object }>('/v1/collections')).body).toMatchObject({
      undeclared: 'allow',
      defaults: { conflict: 'lww' },
    });

    const { body: metrics } = await get<string>('/metrics');
    expect(metrics).toMatch(/^outpost_hub_commits_total [1-9]\d*$/m);
    expect(metrics).toMatch(/^outpost_hub_ops_total\{outcome="committed"\} 2$/m);
    expect(metrics).toMatch(/^outpost_hub_connected_agents 1$/m);
    expect(metrics).toMatch(/^outpost_hub_agent_lag_changes\{agent="pi-2",collection="notes"\} 1$/m);
    expect(metrics).toMatch(/^outpost_hub_message_bytes_total\{direction="in"\} \d+$/m);
    expect(metrics).toMatch(/^outpost_hub_commit_duration_seconds_count \d+$/m);
  });
});

async function sleepUntilOffline(check: () => Promise<boolean>): Promise<void> {
  await waitFor('pi-2 offline', check, 5_000);
}
