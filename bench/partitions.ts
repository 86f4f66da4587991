/**
 * Write load spread over partitions: the same fleet writing to two collections in two partitions
 * (`telemetry` in `default`, `orders` in `billing`), committed by one hub process that leads both
 * against two hub processes that lead one each — behind one Mosquitto, on SQLite. Two figures:
 * the writes per second, and the CPU the busiest leading process spent per 1,000 writes (the
 * load one leader carries). On a 2-core machine the agents' process needs a core of its own, so
 * throughput cannot show a second leader's gain there; the busiest leader's CPU shows the load
 * being split. Skipped where Mosquitto is not installed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from '../agent/agent.js';
import { MOSQUITTO } from '../test/helpers/mosquitto.js';
import { freePort } from '../test/helpers/ports.js';
import { killOnExit } from './children.js';
import { runMosquitto } from './mosquitto-process.js';
import { committedHead } from './hub-db.js';
import { sampleProc } from './proc-stats.js';
import { tempDir } from './temp.js';

export interface PartitionsResult {
  /** Writes per second committed across both partitions by one hub process. */
  oneProcess: number;
  /** The same by two hub processes, one per partition. */
  twoProcesses: number;
  /** CPU ms the busiest hub process spent per 1,000 writes: one process leading both partitions. */
  oneProcessCpuMs: number;
  /** The same with two processes, one per partition: the busier of the two. */
  twoProcessesCpuMs: number;
}

const CLI = fileURLToPath(new URL('../dist/cli/outpost.js', import.meta.url));
const CONFIG = 'partitions:\n  billing: [orders]\n';

export async function benchPartitions(quick: boolean): Promise<PartitionsResult | undefined> {
  if (!MOSQUITTO) return undefined;
  const agents = Number(process.env.BENCH_PARTITION_AGENTS ?? 4);
  const perAgent = quick ? 5_000 : 50_000;
  const one = await run([['default', 'billing']], agents, perAgent);
  const two = await run([['default'], ['billing']], agents, perAgent);
  return { oneProcess: one.rate, twoProcesses: two.rate, oneProcessCpuMs: one.busiestCpuMs, twoProcessesCpuMs: two.busiestCpuMs };
}

/** Writes per second from the moment the agents start, every hub leading, until both partitions hold every write. */
async function run(processes: string[][], agents: number, perAgent: number): Promise<{ rate: number; busiestCpuMs: number }> {
  const dir = tempDir('bench-partitions');
  const config = join(dir, 'hub.yaml');
  writeFileSync(config, CONFIG);
  const broker = await startMosquitto(dir);
  const fleet = Array.from(
    { length: agents },
    (_, a) =>
      new Agent({
        hubUrl: broker.url,
        agentId: `pi-${a}`,
        dataDir: join(dir, `pi-${a}`),
        collections: ['config'],
        reconnect: { initialMs: 20, maxMs: 50 },
      }),
  );
  // The outboxes fill offline; half the writes belong to each partition.
  await Promise.all(
    fleet.map(async (agent, a) => {
      for (let i = 0; i < perAgent; i += 500) {
        await Promise.all(
          Array.from({ length: Math.min(500, perAgent - i) }, (_, j) => {
            const n = i + j;
            return agent.put(n % 2 === 0 ? 'telemetry' : 'orders', `${a}-${n}`, { celsius: 20 + (n % 50) / 10, at: 1_764_000_000_000 + n });
          }),
        );
      }
    }),
  );
  const hubData = join(dir, 'hub');
  const hubs = await Promise.all(processes.map((partitions) => startHub(broker.url, hubData, config, partitions)));
  // The clock starts when the agents connect to hubs that lead: node's own start-up is not ingest.
  const started = performance.now();
  const cpuBefore = hubs.map((hub) => sampleProc(hub.pid!));
  for (const agent of fleet) agent.start();
  const half = (agents * perAgent) / 2;
  await Promise.all([committedHead(join(hubData, 'hub.db'), half), committedHead(join(hubData, 'partitions', 'billing', 'hub.db'), half)]);
  const seconds = (performance.now() - started) / 1000;
  const cpuSeconds = hubs.map((hub, i) => sampleProc(hub.pid!).cpuSeconds - cpuBefore[i]!.cpuSeconds);
  await Promise.all(fleet.map((agent) => agent.close()));
  for (const hub of hubs) hub.kill('SIGTERM');
  await Promise.all(hubs.map((hub) => new Promise((resolve) => (hub.exitCode !== null ? resolve(undefined) : hub.once('exit', resolve)))));
  broker.child.kill('SIGTERM');
  const writes = agents * perAgent;
  return { rate: writes / seconds, busiestCpuMs: (Math.max(...cpuSeconds) * 1000 * 1000) / writes };
}

async function startMosquitto(dir: string): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  // Anonymous on loopback, for the benchmark only (the hubs run --dev); no per-message logging.
  const child = await runMosquitto(join(dir, 'mosquitto.conf'), [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'max_queued_messages 100000',
  ]);
  return { url: `mqtt://127.0.0.1:${port}`, child };
}

/** `outpost hub --dev --broker …` serving `partitions`; resolves once it leads each of them. */
async function startHub(broker: string, dataDir: string, config: string, partitions: string[]): Promise<ChildProcess> {
  const hub = killOnExit(
    spawn(
      process.execPath,
      [
        CLI,
        'hub',
        '--dev',
        '--broker',
        broker,
        '--data',
        dataDir,
        '--config',
        config,
        '--partitions',
        partitions.join(','),
        '--log-level',
        'info',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ),
  );
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.split('"msg":"hub started"').length - 1 < partitions.length) return;
      hub.stdout.off('data', onData);
      hub.stdout.resume(); // keep draining what it logs later
      resolve();
    };
    hub.stdout.on('data', onData);
    hub.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    hub.once('exit', () => reject(new Error(`the hub exited before it started:\n${output}`)));
  });
  return hub;
}
