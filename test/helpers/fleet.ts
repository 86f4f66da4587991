import { join } from 'node:path';
import { Agent, type AgentOptions } from '../../agent/agent.js';
import { Hub, type HubOptions } from '../../hub/hub.js';
import { tempDir } from './temp.js';

/** A hub and agents in this process, on real sockets and real SQLite files in a temp dir. */
export class TestFleet {
  readonly dir = tempDir('fleet');
  hub: Hub | undefined;
  port = 0;
  readonly agents: Agent[] = [];

  constructor(public hubOptions: Partial<HubOptions> = {}) {}

  async startHub(): Promise<Hub> {
    // Restart on the same port, so agents reconnect to the same URL.
    this.hub = await Hub.start({
      port: this.port, host: '127.0.0.1', dataDir: join(this.dir, 'hub'), dev: true, ...this.hubOptions,
    });
    this.port = this.hub.port;
    return this.hub;
  }

  async stopHub(): Promise<void> {
    await this.hub?.stop();
    this.hub = undefined;
  }

  /** An agent on its own data directory; `start: false` lets a test write before it first connects. */
  agent(agentId: string, options: Partial<AgentOptions> = {}, start = true): Agent {
    const agent = new Agent({
      hubUrl: `mqtt://127.0.0.1:${this.port}`,
      agentId,
      dataDir: join(this.dir, agentId),
      reconnect: { initialMs: 50, maxMs: 300 },
      ackTimeoutMs: 2_000,
      ...options,
    });
    if (start) agent.start();
    this.agents.push(agent);
    return agent;
  }

  async close(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.close()));
    await this.stopHub();
  }
}
