/**
 * The hub with a fleet of the size it is meant for: 10,000 devices (quick 500) connected to one
 * hub process (the CLI, not --dev: every device logs in with its own token), each a lightweight
 * protocol client (bench/fleet-device.ts) in one of four worker processes (quick: two), from 1,000 local
 * addresses (10 devices behind each). Every device follows the `config` collection and writes to
 * `telemetry`. In order, on the same hub:
 *
 * - the hub's RSS with 100 devices (quick 50), then with the whole fleet connected and idle: RSS
 *   per device beyond the first 100;
 * - the hub's CPU with the fleet connected and nothing written;
 * - p99 commit-ack latency at 1,000 writes/s, batches of one write spread over the fleet (each
 *   device's publish to its ack, timed in its worker), against the same load from 100 devices
 *   (quick 50) before the rest connected;
 * - a reconnect storm: one device commits 100 `config` documents, the hub is stopped (SIGTERM)
 *   and started again on the same data directory and port; every device reconnects with the
 *   agent's backoff against the hub's limits as configured by default, and counts as resumed
 *   once logged in, subscribed and caught up by pulling from its cursor past those documents.
 *
 * How the tokens are hashed decides the storm (bench/fleet-credentials.ts). By default they are
 * hashed at no cost, so that the figures show the broker, the protocol and the backoff; with
 * `BENCH_FLEET_TOKENS=hub` at the hub's own cost, and then each first login after a start costs
 * an scrypt (~40 ms of a core, two at a time): 10,000 logins take minutes (see docs/BENCHMARKS.md).
 * BENCH_FLEET_DEVICES sets another fleet size.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { fleetIdentities, provisionFleet, type TokenCost } from './fleet-credentials.js';
import type { BrokerAddress } from './fleet-device.js';
import { FLEET_SIZES, measureFleet, type FleetFigures, type FleetSizes } from './fleet-measure.js';
import { FleetWorkers } from './fleet-workers.js';
import { startHubProcess, type HubProcess } from './hub-process.js';
import { coreShare, sampleProc } from './proc-stats.js';
import { tempDir } from './temp.js';

/** Worker processes: four carry 10,000 devices; two start faster for the quick run's 500. */
export const workerCount = (quick: boolean): number => (quick ? 2 : 4);
/** Where a fleet's RSS per device should stay, and a storm's length. */
export const RSS_TARGET_BYTES = 40_000;
export const STORM_TARGET_SECONDS = 30;

export interface StormResult {
  /** From stopping the hub until the new one listened, and of that until the old one had exited. */
  downSeconds: number;
  stopSeconds: number;
  /** From the new hub listening until the last device resumed. */
  seconds: number;
  /** Connection attempts from stopping the hub until the last device resumed. */
  attempts: number;
  /** Attempts that did not log in, by why: while the hub was down, and once it listened again. */
  refusedWhileDown: Record<string, number>;
  refusals: Record<string, number>;
  /** What the new hub counted as shed (outpost_hub_clients_shed_total), by reason. */
  hubShed: Record<string, number>;
  /**
   * Connections the kernel dropped because a listener's accept queue was full, machine-wide
   * (/proc/net/netstat ListenOverflows), from stopping the hub until the last device resumed.
   */
  listenOverflows: number;
  /** The new hub's CPU from listening until the last device resumed. */
  hubCpuShare: number;
  unexpected: Record<string, number>;
}

export interface FleetResult extends FleetFigures {
  tokens: TokenCost;
  sizes: FleetSizes;
  storm: StormResult;
}

/** Every device reads and writes everything: the access section the fleet's hub runs with. */
export function fleetConfig(dir: string): string {
  const file = join(dir, 'hub.json');
  writeFileSync(file, JSON.stringify({ access: { default: { read: ['*'], write: ['*'] } } }));
  return file;
}

export const tokenCost = (): TokenCost => (process.env.BENCH_FLEET_TOKENS === 'hub' ? 'hub' : 'cheap');

/** The sizes, with BENCH_FLEET_DEVICES overriding the device count (a storm at the hub's token cost, say, on a smaller fleet). */
export function fleetSizes(quick: boolean): FleetSizes {
  const sizes: FleetSizes = quick ? FLEET_SIZES.quick : FLEET_SIZES.full;
  const devices = Number(process.env.BENCH_FLEET_DEVICES ?? sizes.devices);
  return { ...sizes, devices, reference: Math.min(sizes.reference, devices) };
}

export const brokerOf = (url: string): BrokerAddress => {
  const { hostname, port } = new URL(url);
  return { host: hostname, port: Number(port) };
};

/**
 * How long a fleet may take to connect: a login at the hub's cost is ~40 ms of one of its two
 * checks at a time (hub/auth-throttle.ts) on a quiet core, several times that on a busy machine.
 */
export const connectTimeoutMs = (devices: number, tokens: TokenCost): number => 120_000 + devices * (tokens === 'hub' ? 200 : 10);

/** The hub's shed counters from its metrics, by reason. */
async function shedCounts(hub: HubProcess): Promise<Record<string, number>> {
  const text = await (await fetch(`${hub.http}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const [, reason, n] of text.matchAll(/^outpost_hub_clients_shed_total\{reason="([a-z_]+)"\} (\d+)/gm)) {
    if (Number(n) > 0) counts[reason!] = Number(n);
  }
  return counts;
}

/** TcpExt ListenOverflows: connections dropped at a full accept queue, since boot, on the whole machine. */
function listenOverflows(): number {
  const [names, values] = readFileSync('/proc/net/netstat', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('TcpExt:'))
    .map((l) => l.split(' '));
  return Number(values?.[names?.indexOf('ListenOverflows') ?? -1] ?? Number.NaN);
}

async function storm(
  hub: HubProcess,
  workers: FleetWorkers,
  restart: () => Promise<HubProcess>,
  target: number,
  timeoutMs: number,
): Promise<{ hub: HubProcess; result: StormResult }> {
  const resumed = workers.storm(target, timeoutMs);
  const overflowsBefore = listenOverflows();
  const stopping = Date.now();
  await hub.stop();
  const stopped = Date.now();
  const next = await restart();
  const listening = Date.now();
  workers.mark();
  const cpuBefore = sampleProc(next.pid);
  const s = await resumed;
  const cpuShare = coreShare(cpuBefore, sampleProc(next.pid));
  const result: StormResult = {
    downSeconds: (listening - stopping) / 1000,
    stopSeconds: (stopped - stopping) / 1000,
    seconds: (s.lastResumedAt - listening) / 1000,
    attempts: s.attempts,
    refusedWhileDown: s.refusedWhileDown,
    refusals: s.refusals,
    hubShed: await shedCounts(next),
    listenOverflows: listenOverflows() - overflowsBefore,
    hubCpuShare: cpuShare,
    unexpected: s.unexpected,
  };
  return { hub: next, result };
}

export async function benchFleet(quick: boolean): Promise<FleetResult> {
  const sizes = fleetSizes(quick);
  const tokens = tokenCost();
  const dir = tempDir('bench-fleet');
  const dataDir = join(dir, 'hub');
  const args = ['--config', fleetConfig(dir)];
  const devices = fleetIdentities(sizes.devices);
  await provisionFleet(dataDir, devices, tokens);
  const timeoutMs = connectTimeoutMs(sizes.devices, tokens);
  const [first, workers] = await Promise.all([startHubProcess(dataDir, args, { dev: false }), FleetWorkers.fork(workerCount(quick))]);
  let hub = first;
  try {
    const broker = brokerOf(hub.url);
    const figures = await measureFleet(workers, broker, devices, sizes, { hub: hub.pid }, timeoutMs);
    const target = await workers.burst(sizes.catchUp);
    const restart = (): Promise<HubProcess> => startHubProcess(dataDir, args, { dev: false, port: broker.port });
    const stormed = await storm(hub, workers, restart, target, timeoutMs);
    hub = stormed.hub;
    return { tokens, sizes, ...figures, storm: stormed.result };
  } finally {
    await workers.close();
    await hub.stop();
  }
}

/** Alone: `npx tsx bench/fleet.ts` (after `npm run build`; `--quick` for the smoke run's sizes). */
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${JSON.stringify(await benchFleet(process.argv.includes('--quick')), null, 2)}\n`);
  process.exit(0);
}
