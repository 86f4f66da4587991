import { join } from 'node:path';
import { Agent, type AgentOptions } from '../../agent/agent.js';
import { Hub } from '../../hub/hub.js';
import { tempDir } from './temp.js';

/** A hub and agents in this process, on real sockets and real SQLite files in a temp dir. */
export class TestFleet {
  readonly dir = tempDir('fleet');
  hub: Hub | undefined;
  port = 0;
  readonly agents: Agent[] = [];

  async startHub(): Promise<Hub> {
    // Restart on the same port, so agents reconnect to the same URL.
    this.hub = await Hub.start({ port: this.port, host: '127.0.0.1', dataDir: join(this.dir, 'hub'), dev: true });
    this.port = this.hub.port;
    return this.hub;
  }

  async stopHub(): Promise<void> {
    await this.hub?.stop();
    this.hub = undefined;
  }

  agent(agentId: string, options: Partial<AgentOptions> = {}): Agent {
    const agent = new Agent({
      hubUrl: `mqtt://127.0.0.1:${this.port}`,
      agentId,
      dataDir: join(this.dir, agentId),
      reconnect: { initialMs: 50, maxMs: 300 },
      ackTimeoutMs: 2_000,
      ...options,
    }).start();
    this.agents.push(agent);
    return agent;
  }

  async close(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.close()));
    await this.stopHub();
  }
}
