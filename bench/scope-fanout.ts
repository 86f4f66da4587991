/**
 * Scoped delivery at fleet size: hub CPU per committed change with 10,000 devices online
 * (quick 1,000) against the same with 100, on the same hub in the same run.
 *
 * The hub runs as its own process (the CLI, --dev) with `config` scoped per device
 * (`{ key: "{agent}/" }`), so each change belongs to one device. The devices are lightweight
 * protocol clients (bench/scope-devices.ts, in up to four worker processes) that only listen
 * on their own topic. A writer here commits changes to random online devices' `config` documents through
 * the hub's HTTP API, paced at 200 a second for 15 s (quick 1 s), first with 100 devices online,
 * then with the whole fleet. The hub's CPU comes from /proc, from the first write until every
 * change has reached its device; each write costs the same HTTP handling in both windows.
 *
 * Every change must reach exactly its one device: each device reports the LSNs it received, and
 * a change missing, duplicated or delivered to another device is counted. The hub's CPU with
 * the same devices connected and nothing written (5 s before each window; quick 0.5 s) is
 * recorded too: what being connected costs per second, apart from the changes.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { prng } from '../test/helpers/prng.js';
import { killOnExit } from './children.js';
import { startHubProcess, type HubProcess } from './hub-process.js';
import { coreShare, sampleProc } from './proc-stats.js';
import type { FromDevices, ToDevices } from './scope-devices.js';
import { sleep } from './stats.js';
import { tempDir } from './temp.js';
import { nextMessage } from './worker-ipc.js';

export interface Deliveries {
  changes: number;
  /** Changes that reached their own device once. */
  delivered: number;
  missing: number;
  /** Deliveries to a device whose document the change was not. */
  misdelivered: number;
  duplicated: number;
}

export interface FanoutWindow {
  devices: number;
  cpuMsPerChange: number;
  /** Hub CPU as a share of one core while writing, and with the same devices connected and nothing written. */
  loadCpuShare: number;
  idleCpuShare: number;
  hubRssBytes: number;
  deliveries: Deliveries;
}

export interface ScopeFanoutResult {
  reference: FanoutWindow;
  fleet: FanoutWindow;
  /** From asking the workers to connect the fleet until every device had its scope. */
  connectSeconds: number;
  /** Changes written per second in each window. */
  rate: number;
  fds: { hub: number; workers: number[] };
}

const RATE = 200;
/** Each worker connects a group of devices at a time and waits for their scopes: several ramp faster than one. */
const WORKERS = 4;
const WORKER = fileURLToPath(new URL('./scope-devices.ts', import.meta.url));

/** Forks a worker; resolves once it waits to be told which devices to connect. */
async function forkDevices(): Promise<ChildProcess> {
  const child = killOnExit(fork(WORKER, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  await nextMessage<FromDevices, 'started'>(child, 'started', 120_000, 'a scope-devices worker');
  return child;
}

/**
 * Connects `count` devices from `dev-<first>`, spread evenly over the workers; resolves once each
 * has its scope, with the open file descriptors of each worker.
 */
async function connect(workers: readonly ChildProcess[], hubUrl: string, first: number, count: number): Promise<number[]> {
  const per = Math.ceil(count / workers.length);
  return Promise.all(
    workers.map(async (child, w) => {
      const ready = nextMessage<FromDevices, 'ready'>(child, 'ready', 300_000, 'a scope-devices worker');
      const from = Math.min(count, w * per);
      child.send({ kind: 'connect', hubUrl, first: first + from, count: Math.min(per, count - from), rampGroup: 100 } satisfies ToDevices);
      return (await ready).openFds;
    }),
  );
}

async function received(workers: readonly ChildProcess[]): Promise<Array<[string, number[]]>> {
  const reports = workers.map((child) => nextMessage<FromDevices, 'report'>(child, 'report', 30_000, 'a scope-devices worker'));
  for (const child of workers) child.send({ kind: 'report' } satisfies ToDevices);
  return (await Promise.all(reports)).flatMap((r) => r.received);
}

/** Commits `seconds` × RATE changes to random devices' documents, paced; returns which device each LSN is for. */
async function write(hub: HubProcess, devices: number, seconds: number, random: () => number): Promise<Map<number, string>> {
  const sent = new Map<number, string>();
  const writes: Array<Promise<void>> = [];
  const started = performance.now();
  for (let i = 0; i < seconds * RATE; i++) {
    const wait = started + (i * 1000) / RATE - performance.now();
    if (wait > 0) await sleep(wait);
    const agentId = `dev-${Math.floor(random() * devices)}`;
    const url = `${hub.http}/v1/docs/config/${encodeURIComponent(`${agentId}/limits`)}`;
    const body = JSON.stringify({ max: i, at: Date.now() });
    writes.push(
      fetch(url, { method: 'PUT', headers: { 'content-type': 'application/json' }, body }).then(async (response) => {
        const result = (await response.json()) as { outcome: string; lsn?: number };
        if (result.outcome !== 'committed' || result.lsn === undefined)
          throw new Error(`a write to ${agentId} was not committed: ${JSON.stringify(result)}`);
        sent.set(result.lsn, agentId);
      }),
    );
  }
  await Promise.all(writes);
  return sent;
}

/** Waits until the devices received as many changes as were sent (or 30 s passed), then checks who got what. */
async function deliveries(workers: readonly ChildProcess[], sent: ReadonlyMap<number, string>): Promise<Deliveries> {
  const deadline = performance.now() + 30_000;
  let got = await received(workers);
  while (got.reduce((n, [, lsns]) => n + lsns.length, 0) < sent.size && performance.now() < deadline) {
    await sleep(100);
    got = await received(workers);
  }
  const seen = new Set<number>();
  let misdelivered = 0;
  let duplicated = 0;
  for (const [agentId, lsns] of got) {
    for (const lsn of lsns) {
      if (sent.get(lsn) !== agentId) misdelivered += 1;
      else if (seen.has(lsn)) duplicated += 1;
      else seen.add(lsn);
    }
  }
  return { changes: sent.size, delivered: seen.size, missing: sent.size - seen.size, misdelivered, duplicated };
}

/** Idle, then writing: the hub's CPU with `devices` online. */
async function measure(
  hub: HubProcess,
  workers: readonly ChildProcess[],
  devices: number,
  seconds: number,
  random: () => number,
): Promise<FanoutWindow> {
  const idleFrom = sampleProc(hub.pid);
  await sleep(Math.min(seconds / 2, 5) * 1000);
  const idleCpuShare = coreShare(idleFrom, sampleProc(hub.pid));
  const before = sampleProc(hub.pid);
  const sent = await write(hub, devices, seconds, random);
  const delivered = await deliveries(workers, sent);
  const after = sampleProc(hub.pid);
  for (const child of workers) child.send({ kind: 'reset' } satisfies ToDevices);
  return {
    devices,
    cpuMsPerChange: ((after.cpuSeconds - before.cpuSeconds) * 1000) / sent.size,
    loadCpuShare: coreShare(before, after),
    idleCpuShare,
    hubRssBytes: after.rssBytes,
    deliveries: delivered,
  };
}

async function stopDevices(workers: readonly ChildProcess[]): Promise<void> {
  await Promise.all(
    workers.map((child) => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.send({ kind: 'close' } satisfies ToDevices);
      return Promise.race([exited, sleep(30_000).then(() => child.kill('SIGKILL'))]);
    }),
  );
}

export async function benchScopeFanout(quick: boolean): Promise<ScopeFanoutResult> {
  const fleetSize = quick ? 1_000 : 10_000;
  const referenceSize = 100;
  const seconds = quick ? 1 : 15;
  const dir = tempDir('bench-scope-fanout');
  const configFile = join(dir, 'hub.json');
  writeFileSync(configFile, JSON.stringify({ collections: { config: { scope: { key: '{agent}/' } } } }));
  // The workers start (tsx compiling their modules) before anything is measured.
  const [hub, workers] = await Promise.all([
    startHubProcess(join(dir, 'hub'), ['--config', configFile, '--connects-per-address', String(fleetSize * 2)]),
    Promise.all(Array.from({ length: WORKERS }, () => forkDevices())),
  ]);
  const random = prng(7);
  try {
    await connect(workers.slice(0, 1), hub.url, 0, referenceSize);
    // Warm-up: the write and delivery paths compiled before either window.
    await deliveries(workers, await write(hub, referenceSize, quick ? 0.5 : 3, random));
    for (const child of workers) child.send({ kind: 'reset' } satisfies ToDevices);
    const reference = await measure(hub, workers, referenceSize, seconds, random);

    const connecting = performance.now();
    const workerFds = await connect(workers, hub.url, referenceSize, fleetSize - referenceSize);
    const connectSeconds = (performance.now() - connecting) / 1000;
    const hubFds = readdirSync(`/proc/${hub.pid}/fd`).length;
    await sleep(quick ? 300 : 3_000); // the scopes told, connection garbage collected
    const fleet = await measure(hub, workers, fleetSize, seconds, random);
    return { reference, fleet, connectSeconds, rate: RATE, fds: { hub: hubFds, workers: workerFds } };
  } finally {
    await stopDevices(workers);
    await hub.stop();
  }
}

/** Whether every change reached exactly its own device. */
export const exact = (d: Deliveries): boolean => d.missing === 0 && d.misdelivered === 0 && d.duplicated === 0;

/** Alone, for the full figures: `npx tsx bench/scope-fanout.ts` (after `npm run build`; `--quick` for the smoke run's sizes). */
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${JSON.stringify(await benchScopeFanout(process.argv.includes('--quick')), null, 2)}\n`);
  process.exit(0);
}
