/**
 * What the fleet benchmark measures on one broker shape, the embedded one or Mosquitto in front
 * of the hub (bench/fleet.ts, bench/fleet-mosquitto.ts): the processes' RSS and CPU with a
 * reference fleet and then the whole fleet connected and idle, and commit-ack latency at
 * 1,000 writes/s from each. `processes` names the pids to watch (the hub, and the broker when
 * it is a process of its own).
 */
import { readdirSync } from 'node:fs';
import type { BrokerAddress, DeviceIdentity } from './fleet-device.js';
import type { FleetWorkers } from './fleet-workers.js';
import { coreShare, sampleProc, type ProcSample } from './proc-stats.js';
import { spread, sleep, type Spread } from './stats.js';

export interface FleetSizes {
  devices: number;
  /** Devices connected for the reference window, before the rest. */
  reference: number;
  loadSeconds: number;
  idleSeconds: number;
  /** `config` documents committed just before a hub restart, for every device to catch up on. */
  catchUp: number;
}

export const FLEET_SIZES = {
  full: { devices: 10_000, reference: 100, loadSeconds: 15, idleSeconds: 15, catchUp: 100 },
  quick: { devices: 500, reference: 50, loadSeconds: 3, idleSeconds: 2, catchUp: 100 },
} satisfies Record<string, FleetSizes>;

/** Writes per second of the latency windows, each a batch of one. */
export const FLEET_RATE = 1_000;
/** Devices each worker connects at once: together about the logins the hub checks or queues at once (hub/auth-throttle.ts). */
const RAMP_GROUP = 16;

/** Per watched process (`hub`, `broker`). */
export type PerProcess = Record<string, number>;

export interface LoadWindow {
  devices: number;
  latency: Spread;
  sent: number;
  failed: number;
  unacked: number;
  cpuShare: PerProcess;
  loopDelayP99Ms: number[];
}

export interface FleetFigures {
  /** RSS with no device, with the reference devices after their load window, with the whole fleet idle. */
  rssNoDevices: PerProcess;
  rssReference: PerProcess;
  rssFleet: PerProcess;
  /** Per device beyond the reference ones: (fleet − reference) / (devices − reference). */
  rssPerDevice: PerProcess;
  idleCpuShare: PerProcess;
  connectSeconds: number;
  /** Connection attempts that did not log in while the fleet connected, by why. */
  connectRefusals: Record<string, number>;
  reference: LoadWindow;
  fleet: LoadWindow;
  fds: { processes: PerProcess; workers: number[] };
}

const each = (processes: PerProcess, f: (pid: number) => number): PerProcess =>
  Object.fromEntries(Object.entries(processes).map(([name, pid]) => [name, f(pid)]));
const samples = (processes: PerProcess): Record<string, ProcSample> =>
  Object.fromEntries(Object.entries(processes).map(([name, pid]) => [name, sampleProc(pid)]));
const shares = (before: Record<string, ProcSample>, after: Record<string, ProcSample>): PerProcess =>
  Object.fromEntries(Object.keys(before).map((name) => [name, coreShare(before[name]!, after[name]!)]));

async function loadWindow(workers: FleetWorkers, processes: PerProcess, devices: number, seconds: number): Promise<LoadWindow> {
  const before = samples(processes);
  const { latencies, ...rest } = await workers.load(FLEET_RATE, seconds * 1000);
  return { devices, latency: spread(latencies), cpuShare: shares(before, samples(processes)), ...rest };
}

export async function measureFleet(
  workers: FleetWorkers,
  broker: BrokerAddress,
  devices: readonly DeviceIdentity[],
  sizes: FleetSizes,
  processes: PerProcess,
  connectTimeoutMs: number,
): Promise<FleetFigures> {
  const quick = sizes.devices < 1_000;
  const settle = (): Promise<void> => sleep(quick ? 500 : 5_000); // start-up or logins' garbage collected
  await settle();
  const rssNoDevices = each(processes, (pid) => sampleProc(pid).rssBytes);

  await workers.connect(broker, devices.slice(0, sizes.reference), RAMP_GROUP, connectTimeoutMs);
  await workers.load(FLEET_RATE, quick ? 500 : 2_000); // warm-up: the write path compiled before either window
  const reference = await loadWindow(workers, processes, sizes.reference, sizes.loadSeconds);
  await settle();
  const rssReference = each(processes, (pid) => sampleProc(pid).rssBytes);

  const connecting = performance.now();
  const connected = await workers.connect(broker, devices.slice(sizes.reference), RAMP_GROUP, connectTimeoutMs);
  const connectSeconds = (performance.now() - connecting) / 1000;
  await settle();
  const idleFrom = samples(processes);
  await sleep(sizes.idleSeconds * 1000);
  const idleCpuShare = shares(idleFrom, samples(processes));
  const rssFleet = each(processes, (pid) => sampleProc(pid).rssBytes);
  const fds = each(processes, (pid) => readdirSync(`/proc/${pid}/fd`).length);
  const fleet = await loadWindow(workers, processes, sizes.devices, sizes.loadSeconds);
  return {
    rssNoDevices,
    rssReference,
    rssFleet,
    rssPerDevice: Object.fromEntries(
      Object.keys(processes).map((name) => [name, (rssFleet[name]! - rssReference[name]!) / (sizes.devices - sizes.reference)]),
    ),
    idleCpuShare,
    connectSeconds,
    connectRefusals: connected.refusals,
    reference,
    fleet,
    fds: { processes: fds, workers: connected.openFds },
  };
}
