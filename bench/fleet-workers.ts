/**
 * The fleet benchmark's worker processes (bench/fleet-devices.ts) seen from the benchmark: the
 * devices spread evenly over them, and each step asked of all of them at once, their answers
 * merged. A worker that reports a failure, exits or stays silent fails the step.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { killOnExit } from './children.js';
import type { BrokerAddress, DeviceIdentity } from './fleet-device.js';
import type { FromDevices, ToDevices } from './fleet-devices.js';
import { sleep } from './stats.js';
import { nextMessage } from './worker-ipc.js';

const WORKER = fileURLToPath(new URL('./fleet-devices.ts', import.meta.url));

export interface FleetLoad {
  latencies: number[];
  sent: number;
  failed: number;
  unacked: number;
  /** p99 delay of each worker's event loop during the load: part of every latency it timed. */
  loopDelayP99Ms: number[];
}

export interface FleetStorm {
  /** When the last device resumed (Date.now()). */
  lastResumedAt: number;
  attempts: number;
  /** Attempts that did not log in, by why (CONNACK code, socket error): while the hub was down, and after. */
  refusedWhileDown: Record<string, number>;
  refusals: Record<string, number>;
  unexpected: Record<string, number>;
}

const add = (into: Record<string, number>, from: Record<string, number>): Record<string, number> => {
  for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n;
  return into;
};

export class FleetWorkers {
  private constructor(private readonly children: ChildProcess[]) {}

  /** Forks `count` workers; resolves once each waits for orders. */
  static async fork(count: number): Promise<FleetWorkers> {
    const children = Array.from({ length: count }, () =>
      killOnExit(fork(WORKER, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })),
    );
    const workers = new FleetWorkers(children);
    await workers.#all('started', 120_000, () => undefined);
    return workers;
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid!);
  }

  /** Connects the devices, spread evenly, each worker `rampGroup` at a time; resolves once all resumed. */
  async connect(
    broker: BrokerAddress,
    devices: readonly DeviceIdentity[],
    rampGroup: number,
    timeoutMs: number,
  ): Promise<{ openFds: number[]; refusals: Record<string, number> }> {
    const shares = this.children.map((_, w) => devices.filter((_, i) => i % this.children.length === w));
    const ready = await this.#all('ready', timeoutMs, (w) => ({ kind: 'connect', broker, devices: shares[w]!, rampGroup }));
    return { openFds: ready.map((r) => r.openFds), refusals: ready.reduce((all, r) => add(all, r.refusals), {}) };
  }

  /** `perSecond` batches of one write, spread over the workers and their devices, for `durationMs`. */
  async load(perSecond: number, durationMs: number): Promise<FleetLoad> {
    const startAt = Date.now() + 300;
    const share = perSecond / this.children.length;
    const done = await this.#all('loaded', durationMs + 60_000, () => ({ kind: 'load', startAt, durationMs, perSecond: share }));
    return {
      latencies: done.flatMap((d) => d.latencies),
      sent: done.reduce((n, d) => n + d.sent, 0),
      failed: done.reduce((n, d) => n + d.failed, 0),
      unacked: done.reduce((n, d) => n + d.unacked, 0),
      loopDelayP99Ms: done.map((d) => d.loopDelayP99Ms),
    };
  }

  /** One device writes `count` documents of the followed collection in one batch; resolves with the last one's LSN. */
  async burst(count: number): Promise<number> {
    const [done] = await this.#some([this.children[0]!], 'burst-done', 30_000, () => ({ kind: 'burst', count }));
    return done!.lsn;
  }

  /** Starts watching a storm now; the promise resolves once every device has resumed with its cursor at `target`. */
  storm(target: number, timeoutMs: number): Promise<FleetStorm> {
    return this.#all('stormed', timeoutMs, () => ({ kind: 'storm', target })).then((all) => ({
      lastResumedAt: Math.max(...all.map((s) => s.lastResumedAt)),
      attempts: all.reduce((n, s) => n + s.attempts, 0),
      refusedWhileDown: all.reduce((r, s) => add(r, s.refusedWhileDown), {}),
      refusals: all.reduce((r, s) => add(r, s.refusals), {}),
      unexpected: all.reduce((r, s) => add(r, s.unexpected), {}),
    }));
  }

  /** During a storm: the hub listens again. */
  mark(): void {
    for (const child of this.children) child.send({ kind: 'mark' } satisfies ToDevices);
  }

  async close(): Promise<void> {
    await Promise.all(
      this.children.map((child) => {
        if (child.exitCode !== null) return Promise.resolve();
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.send({ kind: 'close' } satisfies ToDevices);
        return Promise.race([exited, sleep(30_000).then(() => child.kill('SIGKILL'))]);
      }),
    );
  }

  #all<K extends FromDevices['kind']>(
    kind: K,
    timeoutMs: number,
    order: (worker: number) => ToDevices | undefined,
  ): Promise<Array<Extract<FromDevices, { kind: K }>>> {
    return this.#some(this.children, kind, timeoutMs, order);
  }

  /** Sends each child its order (if any) and waits for its answer, or for the first failure any of them reports. */
  async #some<K extends FromDevices['kind']>(
    children: ChildProcess[],
    kind: K,
    timeoutMs: number,
    order: (worker: number) => ToDevices | undefined,
  ): Promise<Array<Extract<FromDevices, { kind: K }>>> {
    const answers = children.map((child) => nextMessage<FromDevices, K>(child, kind, timeoutMs, 'a fleet worker'));
    let onMessage: (message: FromDevices) => void = () => undefined;
    const failed = new Promise<never>((_, reject) => {
      onMessage = (message) => {
        if (message.kind === 'failed') reject(new Error(`a fleet worker failed: ${message.error}`));
      };
    });
    for (const child of children) child.on('message', onMessage);
    children.forEach((child, w) => {
      const message = order(w);
      if (message) child.send(message);
    });
    try {
      return await Promise.race([Promise.all(answers), failed]);
    } finally {
      for (const child of children) child.off('message', onMessage);
    }
  }
}
