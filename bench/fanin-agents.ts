/**
 * Worker for the fan-in benchmark: real `Agent` instances, each with its own data directory, in
 * one process that the benchmark forks (with tsx). It connects them in groups (a ramp, so that the
 * hub sees a fleet arriving rather than a wall), reports `ready`, and on `go` makes every agent
 * write `batch` documents with `durability: 'hub'` every `intervalMs`, staggered across the fleet,
 * timing each write from the put() call to the hub's commit ack. On `close` it closes them.
 *
 * The agents replicate only `config`, which nobody writes: they are sensors, and the benchmark
 * measures what flows in, not the fan-out of every reading to every device.
 */
import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { Agent } from '../agent/agent.js';

export interface WorkerConfig {
  hubUrl: string;
  dir: string;
  first: number;
  count: number;
  rampGroup: number;
}
export type ToWorker =
  { kind: 'go'; startAt: number; intervalMs: number; batch: number; durationMs: number; fleet: number } | { kind: 'close' };
export type FromWorker =
  | { kind: 'ready'; openFds: number }
  | { kind: 'done'; latencies: number[]; issued: number; failed: number; firstError?: string; loopDelayP99Ms: number };

const config = JSON.parse(process.argv[2]!) as WorkerConfig;
const send = (message: FromWorker): void => {
  process.send!(message);
};
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const agents: Agent[] = [];
for (let from = 0; from < config.count; from += config.rampGroup) {
  const group = Array.from({ length: Math.min(config.rampGroup, config.count - from) }, (_, j) => {
    const id = `fan-${config.first + from + j}`;
    return new Agent({
      hubUrl: config.hubUrl,
      agentId: id,
      dataDir: join(config.dir, id),
      collections: ['config'],
      reconnect: { initialMs: 100, maxMs: 2_000 },
    }).start();
  });
  agents.push(...group);
  while (!group.every((a) => a.status().connected)) await sleep(20);
}
send({ kind: 'ready', openFds: readdirSync('/proc/self/fd').length });

async function run(go: Extract<ToWorker, { kind: 'go' }>): Promise<void> {
  const latencies: number[] = [];
  // How late this process's own event loop ran: the share of the latency spent on the agents' side.
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  let issued = 0;
  let failed = 0;
  let firstError: string | undefined;
  const end = go.startAt + go.durationMs;
  const writes: Array<Promise<void>> = [];
  let timers = 0;
  const at = (when: number, fn: () => void): void => {
    timers += 1;
    setTimeout(
      () => {
        timers -= 1;
        fn();
      },
      Math.max(0, when - Date.now()),
    );
  };
  const cycle = (agent: Agent, index: number, k: number): void => {
    for (let j = 0; j < go.batch; j++) {
      const started = performance.now();
      issued += 1;
      writes.push(
        agent
          .put(
            'telemetry',
            `${agent.id}-${k}-${j}`,
            { celsius: 20 + j / 10, at: Date.now(), cycle: k },
            { durability: 'hub', timeoutMs: 60_000 },
          )
          .then(
            () => void latencies.push(performance.now() - started),
            (error: unknown) => {
              failed += 1;
              firstError ??= (error as Error).message;
            },
          ),
      );
    }
    const next = go.startAt + (index / go.fleet) * go.intervalMs + (k + 1) * go.intervalMs;
    if (next < end) at(next, () => cycle(agent, index, k + 1));
  };
  // Staggered: the fleet's first writes are spread evenly over one interval.
  agents.forEach((agent, j) => {
    const index = config.first + j;
    at(go.startAt + (index / go.fleet) * go.intervalMs, () => cycle(agent, index, 0));
  });
  while (timers > 0) await sleep(20);
  await Promise.all(writes);
  loop.disable();
  send({
    kind: 'done',
    latencies,
    issued,
    failed,
    loopDelayP99Ms: loop.percentile(99) / 1e6,
    ...(firstError !== undefined && { firstError }),
  });
}

/** Closes every agent; one that has not closed within 10 s is reported, not waited for. */
async function close(): Promise<void> {
  let open = agents.length;
  const closing = Promise.all(agents.map((a) => a.close().finally(() => (open -= 1))));
  await Promise.race([closing, sleep(10_000)]);
  if (open > 0) process.stderr.write(`fan-in worker: ${open} agents had not closed after 10 s\n`);
  process.exit(0);
}

process.on('message', (message: ToWorker) => {
  if (message.kind === 'go') void run(message);
  else void close();
});
