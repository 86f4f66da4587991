import { join } from 'node:path';
import { freePort } from '../helpers/ports.js';
import { http, OutpostProcess } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';
import { installArchive } from './archive.js';
import { FaultProxy } from './fault-proxy.js';

export interface AgentStatusBody {
  incarnation: string;
  connected: boolean;
  outboxDepth: number;
  watermark: number;
  collections: Record<string, { appliedLsn: number }>;
}

export interface HubStatusBody {
  head: number;
  collections: Record<string, number>;
}

interface AgentSlot {
  id: string;
  httpPort: number;
  proxy: FaultProxy;
  process: OutpostProcess | undefined;
  args: string[];
}

/**
 * Real `outpost` processes on one machine: a hub and agents, each agent behind its own fault
 * proxy, every process killable with SIGKILL and restartable on the same data.
 */
export class ProcessFleet {
  hub: OutpostProcess | undefined;
  readonly agents = new Map<string, AgentSlot>();
  mqttPort = 0;
  hubHttpPort = 0;
  /** Extra environment for the next hub start (e.g. OUTPOST_FAULT_POINTS). */
  hubEnv: Record<string, string> = {};
  /** Extra arguments for agents added from now on. */
  agentArgs: string[] = [];

  constructor(
    readonly dir: string,
    readonly hubArgs: string[] = [],
  ) {}

  get hubUrl(): string {
    return `http://127.0.0.1:${this.hubHttpPort}`;
  }

  agentUrl(id: string): string {
    return `http://127.0.0.1:${this.agents.get(id)!.httpPort}`;
  }

  async startHub(): Promise<void> {
    installArchive(join(this.dir, 'hub')); // the first time: the checker's record of every commit
    if (!this.mqttPort) [this.mqttPort, this.hubHttpPort] = await Promise.all([freePort(), freePort()]);
    this.hub = new OutpostProcess(
      [
        'hub',
        '--dev',
        '--port',
        String(this.mqttPort),
        '--host',
        '127.0.0.1',
        '--http',
        `127.0.0.1:${this.hubHttpPort}`,
        '--data',
        join(this.dir, 'hub'),
        ...this.hubArgs,
      ],
      this.hubEnv,
    );
    await this.hub.waitForLog('hub started');
  }

  async killHub(): Promise<void> {
    await this.hub?.kill('SIGKILL');
    this.hub = undefined;
  }

  hubAlive(): boolean {
    return this.hub !== undefined && this.hub.child.exitCode === null && this.hub.child.signalCode === null;
  }

  async addAgent(id: string): Promise<void> {
    if (!this.mqttPort) throw new Error('start the hub first');
    const proxy = await FaultProxy.start({ host: '127.0.0.1', port: this.mqttPort });
    this.agents.set(id, { id, httpPort: await freePort(), proxy, process: undefined, args: [...this.agentArgs] });
    await this.startAgent(id);
  }

  async startAgent(id: string): Promise<void> {
    const slot = this.agents.get(id)!;
    slot.process = new OutpostProcess([
      'agent',
      '--hub',
      `mqtt://127.0.0.1:${slot.proxy.port}`,
      '--id',
      id,
      '--data',
      join(this.dir, id),
      '--http',
      `127.0.0.1:${slot.httpPort}`,
      '--reconnect-max-ms',
      '2000',
      ...slot.args,
    ]);
    await slot.process.waitForLog('agent started');
  }

  async killAgent(id: string): Promise<void> {
    const slot = this.agents.get(id)!;
    await slot.process?.kill('SIGKILL');
    slot.process = undefined;
  }

  proxy(id: string): FaultProxy {
    return this.agents.get(id)!.proxy;
  }

  async agentStatus(id: string): Promise<AgentStatusBody | undefined> {
    try {
      return (await http<AgentStatusBody>('GET', `${this.agentUrl(id)}/v1/status`)).body;
    } catch {
      return undefined;
    }
  }

  async hubStatus(): Promise<HubStatusBody | undefined> {
    try {
      return (await http<HubStatusBody>('GET', `${this.hubUrl}/v1/status`)).body;
    } catch {
      return undefined;
    }
  }

  /** Heals every fault, restarts whatever is down, and waits until every agent has caught up. */
  async quiesce(timeoutMs = 120_000): Promise<void> {
    for (const slot of this.agents.values()) slot.proxy.mode = { kind: 'pass' };
    for (const slot of this.agents.values()) {
      slot.proxy.latencyMs = 0;
      slot.proxy.bandwidth = 0;
    }
    if (!this.hubAlive()) {
      this.hubEnv = {};
      await this.startHub();
    }
    for (const slot of this.agents.values()) if (!slot.process) await this.startAgent(slot.id);
    await waitFor(
      'the fleet to quiesce',
      async () => {
        const hub = await this.hubStatus();
        if (!hub) return false;
        for (const id of this.agents.keys()) {
          const s = await this.agentStatus(id);
          if (!s || !s.connected || s.outboxDepth > 0) return false;
          for (const [c, head] of Object.entries(hub.collections)) {
            if (Math.max(s.collections[c]?.appliedLsn ?? 0, s.watermark) < head) return false;
          }
        }
        // Nothing was committed while we looked.
        return (await this.hubStatus())?.head === hub.head;
      },
      timeoutMs,
      200,
    );
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.agents.values()].map(async (slot) => {
        await slot.process?.kill('SIGKILL');
        await slot.proxy.close();
      }),
    );
    await this.hub?.kill('SIGKILL');
  }
}
