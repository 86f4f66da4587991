/**
 * Fan-in and the hub's footprint. A hub in its own process (the CLI, --dev) and a fleet of real
 * agents (1,000; quick 50) in worker processes (bench/fanin-agents.ts), each writing a batch of 5
 * with `durability: 'hub'` every 5 s (quick 1 s), staggered, for 30 s (quick 5 s). The hub's
 * memory and CPU come from /proc. Figures, each against a reference from the same run:
 *
 * - hub RSS under load with the fleet connected (peak of samples taken each second) against the
 *   same hub idle, before any agent connected;
 * - hub CPU per commit under fan-in against the same with a single agent writing batches of 5
 *   every 100 ms (its share of one core is printed too);
 * - p99 commit-ack latency (put() call to the hub's commit ack, timed in the agent's process)
 *   against the single agent's p99;
 * - whether it keeps up: commits per second at the hub (its head LSN across the window) against
 *   the writes per second the fleet offered.
 *
 * The hub's per-address connection limit (200 per 10 s by default; every agent here comes from
 * 127.0.0.1) is raised with --connects-per-address, and the workers connect in groups of 50.
 * Each agent holds a socket and three SQLite files open; open descriptors and the limit are
 * recorded. On a small machine the workers compete with the hub for CPU, so their CPU and the
 * delay of their event loops (part of every latency they time) are recorded too.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FromWorker, ToWorker, WorkerConfig } from './fanin-agents.js';
import { killOnExit } from './children.js';
import { startHubProcess, type HubProcess } from './hub-process.js';
import { coreShare, sampleProc } from './proc-stats.js';
import { percentile, sleep } from './stats.js';
import { tempDir } from './temp.js';
import { nextMessage } from './worker-ipc.js';

export interface FaninResult {
  agents: number;
  /** Hub resident memory: idle before any agent, with the fleet connected and idle, peak under load. */
  hubRssIdle: number;
  hubRssConnected: number;
  hubRssLoaded: number;
  /** Hub CPU during the load as a share of one core; CPU ms per commit, under load and for the single agent. */
  hubCpuShare: number;
  cpuMsPerCommit: number;
  refCpuMsPerCommit: number;
  p50Ms: number;
  p99Ms: number;
  refP50Ms: number;
  refP99Ms: number;
  /** Under load: each worker's CPU as a share of one core, and the p99 delay of its event loop. */
  workers: Array<{ cpuShare: number; loopDelayP99Ms: number }>;
  offeredPerSecond: number;
  committedPerSecond: number;
  failed: number;
  /** From forking the workers until every agent was connected (the ramp). */
  connectSeconds: number;
  /** Open file descriptors: the soft limit, the hub's and each worker's, with the fleet connected. */
  fds: { limit: number; hub: number; workers: number[] };
}

type Go = Omit<Extract<ToWorker, { kind: 'go' }>, 'kind' | 'startAt'>;
type Done = Extract<FromWorker, { kind: 'done' }>;

const expect = <K extends FromWorker['kind']>(child: ChildProcess, kind: K, timeoutMs: number): Promise<Extract<FromWorker, { kind: K }>> =>
  nextMessage<FromWorker, K>(child, kind, timeoutMs, 'a fan-in worker');

/** Forks a worker running `count` agents and waits until they are all connected. */
async function startWorker(config: WorkerConfig): Promise<{ child: ChildProcess; openFds: number }> {
  const child = killOnExit(
    fork(fileURLToPath(new URL('./fanin-agents.ts', import.meta.url)), [JSON.stringify(config)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
  const { openFds } = await expect(child, 'ready', 180_000);
  return { child, openFds };
}

async function stopWorker(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.send({ kind: 'close' } satisfies ToWorker);
  if (await Promise.race([exited.then(() => true), sleep(30_000).then(() => false)])) return;
  process.stderr.write('a fan-in worker did not exit within 30 s of close; killed\n');
  child.kill('SIGKILL');
  await exited;
}

interface Window {
  latencies: number[];
  issued: number;
  failed: number;
  commits: number;
  cpuSeconds: number;
  seconds: number;
  peakRss: number;
  workers: Array<{ cpuShare: number; loopDelayP99Ms: number }>;
}

/** Starts the writing on every worker at once and watches the hub until it ends. */
async function loadWindow(hub: HubProcess, children: ChildProcess[], go: Go): Promise<Window> {
  const done = children.map((child) => expect(child, 'done', go.durationMs + 120_000));
  const startAt = Date.now() + 500;
  for (const child of children) child.send({ kind: 'go', startAt, ...go } satisfies ToWorker);
  await sleep(startAt - Date.now());
  const before = sampleProc(hub.pid);
  const workersBefore = children.map((child) => sampleProc(child.pid!));
  const headBefore = await hub.head();
  let peakRss = before.rssBytes;
  for (let left = startAt + go.durationMs - Date.now(); left > 0; left = startAt + go.durationMs - Date.now()) {
    await sleep(Math.min(1000, left));
    peakRss = Math.max(peakRss, sampleProc(hub.pid).rssBytes);
  }
  const after = sampleProc(hub.pid);
  const workersAfter = children.map((child) => sampleProc(child.pid!));
  const commits = (await hub.head()) - headBefore;
  const results: Done[] = await Promise.all(done);
  return {
    latencies: results.flatMap((r) => r.latencies),
    issued: results.reduce((n, r) => n + r.issued, 0),
    failed: results.reduce((n, r) => n + r.failed, 0),
    commits,
    cpuSeconds: after.cpuSeconds - before.cpuSeconds,
    seconds: (after.at - before.at) / 1000,
    peakRss,
    workers: results.map((r, i) => ({ cpuShare: coreShare(workersBefore[i]!, workersAfter[i]!), loopDelayP99Ms: r.loopDelayP99Ms })),
  };
}

export async function benchFanin(quick: boolean): Promise<FaninResult> {
  const agents = quick ? 50 : 1_000;
  const perWorker = quick ? 50 : 500;
  const dir = tempDir('bench-fanin');
  const hub = await startHubProcess(join(dir, 'hub'), ['--connects-per-address', String(agents * 10)]);
  try {
    await sleep(quick ? 1_000 : 3_000); // start-up garbage collected, timers running
    const hubRssIdle = sampleProc(hub.pid).rssBytes;

    // Reference: one agent, the same batches of 5 but every 100 ms, on the same hub.
    const single = await startWorker({ hubUrl: hub.url, dir: join(dir, 'single'), first: 0, count: 1, rampGroup: 1 });
    const ref = await loadWindow(hub, [single.child], { intervalMs: 100, batch: 5, durationMs: quick ? 2_000 : 5_000, fleet: 1 });
    await stopWorker(single.child);

    // The workers start together; each ramps through its own groups.
    const forked = performance.now();
    const fleet = await Promise.all(
      Array.from({ length: Math.ceil(agents / perWorker) }, (_, w) =>
        startWorker({
          hubUrl: hub.url,
          dir: join(dir, 'fleet'),
          first: w * perWorker,
          count: Math.min(perWorker, agents - w * perWorker),
          rampGroup: quick ? 25 : 50,
        }),
      ),
    );
    const connectSeconds = (performance.now() - forked) / 1000;
    await sleep(quick ? 1_000 : 2_000);
    const hubRssConnected = sampleProc(hub.pid).rssBytes;
    const hubFds = readdirSync(`/proc/${hub.pid}/fd`).length;
    const load = await loadWindow(
      hub,
      fleet.map((w) => w.child),
      { intervalMs: quick ? 1_000 : 5_000, batch: 5, durationMs: quick ? 5_000 : 30_000, fleet: agents },
    );
    await Promise.all(fleet.map((w) => stopWorker(w.child)));
    const limit = Number(/Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? Number.NaN);
    return {
      agents,
      hubRssIdle,
      hubRssConnected,
      hubRssLoaded: load.peakRss,
      hubCpuShare: load.cpuSeconds / load.seconds,
      cpuMsPerCommit: (load.cpuSeconds * 1000) / load.commits,
      refCpuMsPerCommit: (ref.cpuSeconds * 1000) / ref.commits,
      p50Ms: percentile(load.latencies, 50),
      p99Ms: percentile(load.latencies, 99),
      refP50Ms: percentile(ref.latencies, 50),
      refP99Ms: percentile(ref.latencies, 99),
      workers: load.workers,
      offeredPerSecond: load.issued / load.seconds,
      committedPerSecond: load.commits / load.seconds,
      failed: load.failed + ref.failed,
      connectSeconds,
      fds: { limit, hub: hubFds, workers: fleet.map((w) => w.openFds) },
    };
  } finally {
    await hub.stop();
  }
}
