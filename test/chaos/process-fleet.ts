import { join } from 'node:path';
import { freePort } from '../helpers/ports.js';
import { http, OutpostProcess, outpostAsync } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';
import { installArchive } from './archive.js';
import { FaultProxy, type DownstreamTap } from './fault-proxy.js';
import { isScoped } from './scope-plan.js';
import { scopeSettled } from './scope-settle.js';

export interface AgentStatusBody {
  incarnation: string;
  connected: boolean;
  outboxDepth: number;
  watermark: number;
  catchingUp: boolean;
  collections: Record<string, { appliedLsn: number }>;
  /** The buckets of its scope it holds, and how many are behind the heads it heard. */
  scope?: { buckets: Record<string, number>; behind: number };
  /** What verifying its copy found; `repairing`: collections it is still repairing. */
  verification?: { divergencesFound: number; repairing: string[] };
  /** Blobs written on it whose content the hub does not hold yet (their documents wait for it). */
  blobs?: { uploads: { blobs: number } };
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

/** How many provisioning commands run at once: each is a process of its own, and scrypts its token. */
const PROVISIONING_AT_ONCE = 4;

/**
 * Real `outpost` processes on one machine: a hub and agents, each agent behind its own fault
 * proxy, every process killable with SIGKILL and restartable on the same data. The hub admits
 * only provisioned agents, each with the token `outpost hub agents add` printed for it, as in
 * production: a spy holding a device's credentials meets the same checks the device does.
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
  /** Makes a tap for each connection of an agent's link, given its id (see FaultProxy). */
  tapDown: ((agentId: string) => DownstreamTap) | undefined;
  /** Each provisioned agent's token. */
  readonly #tokens = new Map<string, string>();

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

  get mqttUrl(): string {
    return `mqtt://127.0.0.1:${this.mqttPort}`;
  }

  /** Provisions agents through the CLI, as an operator does, with the labels each is to have. */
  async provision(ids: readonly string[], labelsOf: (id: string) => Record<string, string> = () => ({})): Promise<void> {
    installArchive(join(this.dir, 'hub')); // before any command creates the database without it
    const queue = ids.filter((id) => !this.#tokens.has(id));
    const one = async (): Promise<void> => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        const labels = Object.entries(labelsOf(id)).flatMap(([name, value]) => ['--label', `${name}=${value}`]);
        const token = (await outpostAsync(['hub', 'agents', 'add', id, ...labels, '--data', join(this.dir, 'hub')])).trim();
        this.#tokens.set(id, token);
      }
    };
    await Promise.all(Array.from({ length: PROVISIONING_AT_ONCE }, one));
  }

  /** An agent's token, as provisioned. */
  tokenOf(id: string): string {
    const token = this.#tokens.get(id);
    if (token === undefined) throw new Error(`agent ${id} was not provisioned`);
    return token;
  }

  /** Sets one label of an agent through the CLI, from another process, as an operator does while everything runs. */
  async setLabel(id: string, name: string, value: string): Promise<void> {
    await outpostAsync(['hub', 'agents', 'label', id, `${name}=${value}`, '--data', join(this.dir, 'hub')]);
  }

  /** Provisions the agent unless it was, and starts it behind a proxy of its own. */
  async addAgent(id: string, labels: Record<string, string> = {}): Promise<void> {
    if (!this.mqttPort) throw new Error('start the hub first');
    await this.provision([id], () => labels);
    const tap = this.tapDown;
    const proxy = await FaultProxy.start({ host: '127.0.0.1', port: this.mqttPort }, tap && (() => tap(id)));
    this.agents.set(id, { id, httpPort: await freePort(), proxy, process: undefined, args: [...this.agentArgs] });
    await this.startAgent(id);
  }

  async startAgent(id: string): Promise<void> {
    const slot = this.agents.get(id)!;
    slot.process = new OutpostProcess(
      [
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
      ],
      // Where an operator puts it: in the environment, not on the command line.
      { OUTPOST_HUB_TOKEN: this.tokenOf(id) },
    );
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
          if (!s || !s.connected || s.outboxDepth > 0 || s.catchingUp || (s.blobs?.uploads.blobs ?? 0) > 0) return false;
          if ((s.verification?.repairing.length ?? 0) > 0) return false;
          if (!scopeSettled(join(this.dir, 'hub'), id, s.scope?.buckets)) return false;
          for (const [c, head] of Object.entries(hub.collections)) {
            if (isScoped(c)) continue; // followed per bucket, above
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
