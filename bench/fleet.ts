/**
 * The hub with a fleet of the size it is meant for: 10,000 devices (quick 500) connected to one
 * hub process (the CLI, not --dev: every device logs in with its own token), each a lightweight
 * protocol client (bench/fleet-device.ts) in one of four worker processes, from 1,000 local
 * addresses (10 devices behind each). Every device follows the `config` collection and writes to
 * `telemetry`. In order, on the same hub:
 *
 * - the hub's RSS with no device connected, then with the fleet connected and idle: RSS per device;
 * - the hub's CPU with the fleet connected and nothing written;
 * - p99 commit-ack latency at 1,000 writes/s, batches of one write spread over the fleet (each
 *   device's publish to its ack, timed in its worker), against the same load from 100 devices
 *   (quick 50) before the rest connected;
 * - a reconnect storm: one device commits 100 `config` documents, the hub is stopped (SIGTERM)
 *   and started again on the same data directory and port; every device reconnects with the
 *   agent's backoff against the hub's limits as configured by default, and counts as resumed
 *   once logged in, subscribed and caught up by pulling from its cursor past those documents.
 *
 * How the tokens are hashed decides the storm (bench/fleet-credentials.ts): at the hub's own
 * cost (the full run's default) each first login after a start costs an scrypt;
 * `BENCH_FLEET_TOKENS=cheap` (the quick run's default) leaves it out.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { fleetIdentities, provisionFleet, type TokenCost } from './fleet-credentials.js';
import type { BrokerAddress } from './fleet-device.js';
import { FLEET_SIZES, measureFleet, type FleetFigures, type FleetSizes } from './fleet-measure.js';
import { FleetWorkers } from './fleet-workers.js';
import { startHubProcess, type HubProcess } from './hub-process.js';
import { coreShare, sampleProc } from './proc-stats.js';
import { tempDir } from './temp.js';

export const WORKERS = 4;
/** Where a fleet's RSS per device should stay, and a storm's length. */
export const RSS_TARGET_BYTES = 40_000;
export const STORM_TARGET_SECONDS = 30;

export interface StormResult {
  /** From stopping the hub until the new one listened. */
  downSeconds: number;
  /** From the new hub listening until the last device resumed. */
  seconds: number;
  /** Connection attempts from stopping the hub until the last device resumed. */
  attempts: number;
  /** Attempts that did not log in, by why: while the hub was down, and once it listened again. */
  refusedWhileDown: Record<string, number>;
  refusals: Record<string, number>;
  /** What the new hub counted as shed (outpost_hub_clients_shed_total), by reason. */
  hubShed: Record<string, number>;
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

export const tokenCost = (quick: boolean): TokenCost =>
  (process.env.BENCH_FLEET_TOKENS as TokenCost | undefined) ?? (quick ? 'cheap' : 'hub');

export const brokerOf = (url: string): BrokerAddress => {
  const { hostname, port } = new URL(url);
  return { host: hostname, port: Number(port) };
};

/** How long a fleet may take to connect: a login at the hub's cost is ~40 ms of one of its two checks at a time (hub/auth-throttle.ts). */
export const connectTimeoutMs = (devices: number, tokens: TokenCost): number => 120_000 + devices * (tokens === 'hub' ? 60 : 10);

/** The hub's shed counters from its metrics, by reason. */
async function shedCounts(hub: HubProcess): Promise<Record<string, number>> {
  const text = await (await fetch(`${hub.http}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const [, reason, n] of text.matchAll(/^outpost_hub_clients_shed_total\{reason="([a-z_]+)"\} (\d+)/gm)) {
    if (Number(n) > 0) counts[reason!] = Number(n);
  }
  return counts;
}

async function storm(
  hub: HubProcess,
  workers: FleetWorkers,
  restart: () => Promise<HubProcess>,
  target: number,
  timeoutMs: number,
): Promise<{ hub: HubProcess; result: StormResult }> {
  const resumed = workers.storm(target, timeoutMs);
  const stopping = Date.now();
  await hub.stop();
  const next = await restart();
  const listening = Date.now();
  workers.mark();
  const cpuBefore = sampleProc(next.pid);
  const s = await resumed;
  const cpuShare = coreShare(cpuBefore, sampleProc(next.pid));
  const result: StormResult = {
    downSeconds: (listening - stopping) / 1000,
    seconds: (s.lastResumedAt - listening) / 1000,
    attempts: s.attempts,
    refusedWhileDown: s.refusedWhileDown,
    refusals: s.refusals,
    hubShed: await shedCounts(next),
    hubCpuShare: cpuShare,
    unexpected: s.unexpected,
  };
  return { hub: next, result };
}

export async function benchFleet(quick: boolean): Promise<FleetResult> {
  const sizes: FleetSizes = quick ? FLEET_SIZES.quick : FLEET_SIZES.full;
  const tokens = tokenCost(quick);
  const dir = tempDir('bench-fleet');
  const dataDir = join(dir, 'hub');
  const args = ['--config', fleetConfig(dir)];
  const devices = fleetIdentities(sizes.devices);
  await provisionFleet(dataDir, devices, tokens);
  const timeoutMs = connectTimeoutMs(sizes.devices, tokens);
  const [first, workers] = await Promise.all([startHubProcess(dataDir, args, { dev: false }), FleetWorkers.fork(WORKERS)]);
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
