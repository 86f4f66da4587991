import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { Agent } from '../../agent/agent.js';
import { freePort } from './ports.js';
import { outpost, OutpostProcess } from './processes.js';
import { tempDir } from './temp.js';
import { sleep, waitFor } from './wait.js';

/** The legit devices that write and replicate throughout an attack. */
const LEGIT = ['pi-1', 'pi-2'] as const;
/** The device whose credential the attacker holds. */
export const STOLEN_ID = 'pi-stolen';

/**
 * A secure hub process (not --dev) with two legit agents writing and replicating, and one more
 * provisioned device whose token an attacker holds: the bench for the tests that a hub under
 * attack sheds the attacker and keeps its legit devices' latency.
 */
export class HubUnderAttack {
  #writing = false;
  #writers: Promise<void>[] = [];
  #probes = 0;
  /** Writes the legit load has made so far. */
  loadWrites = 0;

  private constructor(
    readonly hub: OutpostProcess,
    readonly mqttPort: number,
    readonly httpUrl: string,
    readonly agents: readonly Agent[],
    /** The stolen device's token. */
    readonly stolenToken: string,
    /** Hub RSS once the legit load is running, before any attack. */
    public baselineRss = 0,
  ) {}

  /** Starts the hub with `args` added to its command line, and the two legit agents. */
  static async start(args: string[] = []): Promise<HubUnderAttack> {
    const dir = tempDir('attack');
    const data = join(dir, 'hub');
    const config = join(dir, 'hub.yaml');
    writeFileSync(config, 'access:\n  default: { read: ["*"], write: ["*"] }\n');
    const tokens = Object.fromEntries(
      [...LEGIT, STOLEN_ID].map((id) => [id, outpost(['hub', 'agents', 'add', id, '--data', data]).trim()]),
    );
    const [mqttPort, httpPort] = [await freePort(), await freePort()];
    const hub = new OutpostProcess([
      'hub',
      ...['--host', '127.0.0.1', '--port', String(mqttPort), '--http', `127.0.0.1:${httpPort}`],
      ...['--data', data, '--config', config],
      ...args,
    ]);
    try {
      await hub.waitForLog('hub started');
    } catch (error) {
      await hub.kill();
      throw error;
    }
    const agents = LEGIT.map((id) =>
      new Agent({
        hubUrl: `mqtt://127.0.0.1:${mqttPort}`,
        agentId: id,
        hubToken: tokens[id]!,
        dataDir: join(dir, id),
        reconnect: { initialMs: 50, maxMs: 500 },
      }).start(),
    );
    const bench = new HubUnderAttack(hub, mqttPort, `http://127.0.0.1:${httpPort}`, agents, tokens[STOLEN_ID]!);
    await bench.legitWriteReplicates();
    return bench;
  }

  get mqttUrl(): string {
    return `mqtt://127.0.0.1:${this.mqttPort}`;
  }

  /** The attacker: the stolen device logged in with MQTT.js. */
  stolen(): Promise<mqtt.MqttClient> {
    return mqtt.connectAsync(this.mqttUrl, { clientId: STOLEN_ID, username: STOLEN_ID, password: this.stolenToken, reconnectPeriod: 0 });
  }

  /**
   * 300 documents of 8 KB that deflate cannot shrink, written by a legit agent: each pull of the
   * whole log is a 512 KB page to build.
   */
  async seedBulk(): Promise<void> {
    const [writer] = this.agents;
    for (let i = 0; i < 300; i++) await writer!.put('bulk', `b${i}`, { filler: randomBytes(6_000).toString('base64') });
  }

  /**
   * Both legit agents write `perSecond` writes of `bytes` each between them, until stop();
   * then records the hub's RSS under that load as the baseline.
   */
  async startLoad(perSecond: number, bytes: number): Promise<void> {
    this.#writing = true;
    // Random, each its own, so that deflate cannot shrink the traffic the load is meant to make.
    const filler = (): string => randomBytes(Math.ceil((bytes * 3) / 4)).toString('base64');
    const everyMs = (1000 * this.agents.length) / perSecond;
    this.#writers = this.agents.map(async (agent) => {
      for (let i = 0; this.#writing; i++) {
        const started = Date.now();
        // A bounded key space: the load is about traffic, not about the database growing.
        await agent.put('load', `${agent.id}-${i % 50}`, { i, filler: filler() }).then(
          () => (this.loadWrites += 1),
          () => undefined,
        );
        await sleep(Math.max(0, everyMs - (Date.now() - started)));
      }
    });
    await this.legitWriteReplicates();
    this.baselineRss = this.rss();
  }

  /** How long (ms) a write by one legit agent takes to reach the other; fails past `withinMs`. */
  async legitWriteReplicates(withinMs = 5_000): Promise<number> {
    const [writer, reader] = this.agents as [Agent, Agent];
    const key = `probe-${++this.#probes}`;
    const started = Date.now();
    await writer.put('probes', key, { at: started });
    await waitFor(`${writer.id}'s write ${key} replicated to ${reader.id}`, () => reader.get('probes', key), withinMs);
    return Date.now() - started;
  }

  /** How long (ms) /healthz takes to answer 200; fails past `withinMs`. */
  async healthz(withinMs = 2_000): Promise<number> {
    const started = Date.now();
    const response = await fetch(`${this.httpUrl}/healthz`, { signal: AbortSignal.timeout(withinMs) });
    if (response.status !== 200) throw new Error(`/healthz answered ${response.status}`);
    return Date.now() - started;
  }

  /** The hub process's resident set size, in bytes. */
  rss(): number {
    const status = readFileSync(`/proc/${this.hub.child.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
  }

  /** Runs `attack`, sampling the hub's RSS meanwhile: what it returns, and the largest growth over the baseline. */
  async peakRssGrowthDuring<T>(attack: () => Promise<T>): Promise<{ result: T; peakGrowth: number }> {
    let peak = this.rss();
    const sampler = setInterval(() => (peak = Math.max(peak, this.rss())), 50);
    try {
      const result = await attack();
      return { result, peakGrowth: Math.max(peak, this.rss()) - this.baselineRss };
    } finally {
      clearInterval(sampler);
    }
  }

  /** CPU time (user + system) the hub process has used, in seconds. */
  cpuSeconds(): number {
    const fields = readFileSync(`/proc/${this.hub.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  }

  /** `outpost_hub_clients_shed_total{reason}` as the hub exports it. */
  shed(reason: string): Promise<number> {
    return this.#counter(`outpost_hub_clients_shed_total{reason="${reason}"}`);
  }

  /** `outpost_hub_work_refused_total{kind}` as the hub exports it. */
  refused(kind: string): Promise<number> {
    return this.#counter(`outpost_hub_work_refused_total{kind="${kind}"}`);
  }

  async #counter(series: string): Promise<number> {
    const text = await (await fetch(`${this.httpUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(series));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  }

  /**
   * What every attack test ends with: a legit write replicates within 5 s, /healthz answers
   * within 2 s, and the hub's RSS is within 200 MB of its baseline.
   */
  async expectHealthy(): Promise<{ replicationMs: number; healthzMs: number; rssGrowth: number }> {
    const replicationMs = await this.legitWriteReplicates(5_000);
    const healthzMs = await this.healthz(2_000);
    const rssGrowth = this.rss() - this.baselineRss;
    if (rssGrowth > 200 * 1024 * 1024) throw new Error(`hub RSS grew by ${Math.round(rssGrowth / 2 ** 20)} MB under attack`);
    return { replicationMs, healthzMs, rssGrowth };
  }

  async stop(): Promise<void> {
    this.#writing = false;
    await Promise.all(this.#writers);
    await Promise.all(this.agents.map((a) => a.close()));
    await this.hub.kill('SIGTERM');
  }
}
