/**
 * Worker of the fleet benchmark (bench/fleet.ts): a share of the fleet's devices
 * (bench/fleet-device.ts) in one process. Forked before anything is measured, it connects its
 * devices when told, a group at a time, and answers `ready` once each has resumed. Then, as
 * told: a paced write load whose commit-ack latencies it returns; one batch of writes to the
 * followed collection (for the others to catch up on); and watching a reconnect storm, answered
 * once every device has resumed again and pulled up to the LSN given.
 */
import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { HybridClock } from '../shared/hlc.js';
import { Device, FOLLOWED, WRITTEN, type BrokerAddress, type DeviceEvents, type DeviceIdentity } from './fleet-device.js';

export type ToDevices =
  | { kind: 'connect'; broker: BrokerAddress; devices: DeviceIdentity[]; rampGroup: number }
  /** Writes `perSecond` batches of one op, spread over the devices, from `startAt` (Date.now()) for `durationMs`. */
  | { kind: 'load'; startAt: number; durationMs: number; perSecond: number }
  /** The first device writes `count` documents of the followed collection in one batch. */
  | { kind: 'burst'; count: number }
  /** Counts from now: answered (`stormed`) once every device has resumed again with its cursor at `target` or beyond. */
  | { kind: 'storm'; target: number }
  /** During a storm: the hub listens again; what was refused so far was refused while it was down. */
  | { kind: 'mark' }
  | { kind: 'close' };

export type FromDevices =
  | { kind: 'started' }
  /** `refusals`: connection attempts that did not log in, by why, while connecting. */
  | { kind: 'ready'; openFds: number; refusals: Record<string, number> }
  | { kind: 'loaded'; latencies: number[]; sent: number; failed: number; unacked: number; loopDelayP99Ms: number }
  | { kind: 'burst-done'; lsn: number }
  | {
      kind: 'stormed';
      lastResumedAt: number;
      attempts: number;
      /** Attempts that did not log in, by why: while the hub was down (before `mark`), and after. */
      refusedWhileDown: Record<string, number>;
      refusals: Record<string, number>;
      unexpected: Record<string, number>;
    }
  | { kind: 'failed'; error: string };

/** How long a load waits for its last acks before counting the rest as unacked. */
const ACK_GRACE_MS = 10_000;

const send = (message: FromDevices): void => {
  process.send!(message);
};

const clock = new HybridClock();
const devices: Device[] = [];
let latencies: number[] = [];
let failed = 0;
let refusals: Record<string, number> = {};
let unexpected: Record<string, number> = {};
let refusedWhileDown: Record<string, number> = {};
/** Called on each device's resume: the waiting `connect` or `storm` checks whether it is done. */
let onResumed: () => void = () => undefined;

const tally = (counts: Record<string, number>, key: string): void => {
  counts[key] = (counts[key] ?? 0) + 1;
};
const events: DeviceEvents = {
  resumed: () => onResumed(),
  refused: (reason) => tally(refusals, reason),
  acked: (ms, committed) => {
    if (committed) latencies.push(ms);
    else failed += 1;
  },
  unexpected: (type) => tally(unexpected, type),
};

/** Resolves once `done()` holds, checked at each resume. */
function whenResumed(done: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (!done()) return;
      onResumed = () => undefined;
      resolve();
    };
    onResumed = check;
    check();
  });
}

async function connect({ broker, devices: identities, rampGroup }: Extract<ToDevices, { kind: 'connect' }>): Promise<void> {
  for (let from = 0; from < identities.length; from += rampGroup) {
    const group = identities.slice(from, from + rampGroup).map((identity) => new Device(identity, broker, clock, events));
    devices.push(...group);
    for (const device of group) device.start();
    await whenResumed(() => group.every((d) => d.resumedAt > 0));
  }
  send({ kind: 'ready', openFds: readdirSync('/proc/self/fd').length, refusals });
  refusals = {};
}

async function load({ startAt, durationMs, perSecond }: Extract<ToDevices, { kind: 'load' }>): Promise<void> {
  latencies = [];
  failed = 0;
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const acks: Array<Promise<number>> = [];
  let sent = 0;
  let next = 0;
  const total = Math.round((perSecond * durationMs) / 1000);
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, startAt - Date.now())));
  loop.enable();
  // Catches up with the schedule at each wake-up, so a late timer does not lower the rate.
  while (sent < total) {
    const due = Math.min(total, Math.floor(((Date.now() - startAt) * perSecond) / 1000) + 1);
    for (; sent < due; sent++) {
      // Each batch goes to the next connected device, round the fleet.
      for (let tries = 0; tries < devices.length; tries++) {
        const device = devices[next++ % devices.length]!;
        const acked = device.upload(WRITTEN, [{ celsius: 20 + (sent % 50) / 10, at: Date.now() }]);
        if (acked) {
          acks.push(acked);
          break;
        }
      }
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(1, startAt + (sent * 1000) / perSecond - Date.now())));
  }
  loop.disable();
  let unacked = acks.length;
  const settled = Promise.all(acks.map((a) => a.then(() => (unacked -= 1))));
  await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, ACK_GRACE_MS))]);
  send({ kind: 'loaded', latencies, sent, failed, unacked, loopDelayP99Ms: loop.percentile(99) / 1e6 });
}

async function burst(count: number): Promise<void> {
  const values = Array.from({ length: count }, (_, i) => ({ interval: 60 + i, at: Date.now() }));
  const lsn = await devices[0]!.upload(FOLLOWED, values);
  if (lsn === undefined) throw new Error('the device writing the burst is not connected');
  send({ kind: 'burst-done', lsn });
}

async function storm(target: number): Promise<void> {
  refusals = {};
  unexpected = {};
  refusedWhileDown = {};
  const from = Date.now();
  const attemptsBefore = devices.reduce((n, d) => n + d.attempts, 0);
  await whenResumed(() => devices.every((d) => d.resumedAt >= from && d.cursor >= target));
  send({
    kind: 'stormed',
    lastResumedAt: Math.max(...devices.map((d) => d.resumedAt)),
    attempts: devices.reduce((n, d) => n + d.attempts, 0) - attemptsBefore,
    refusedWhileDown,
    refusals,
    unexpected,
  });
}

const fail = (error: unknown): void => send({ kind: 'failed', error: String(error) });

process.on('message', (message: ToDevices) => {
  if (message.kind === 'connect') connect(message).catch(fail);
  else if (message.kind === 'load') load(message).catch(fail);
  else if (message.kind === 'burst') burst(message.count).catch(fail);
  else if (message.kind === 'storm') storm(message.target).catch(fail);
  else if (message.kind === 'mark') [refusedWhileDown, refusals] = [refusals, {}];
  else void Promise.all(devices.map((d) => d.stop())).then(() => process.exit(0));
});
send({ kind: 'started' });
