import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { http } from '../helpers/processes.js';
import { sleep } from '../helpers/wait.js';
import { check, clean, summaryLine, type Verdict } from './checker.js';
import { History } from './history.js';
import { ProcessFleet } from './process-fleet.js';
import { prng } from '../helpers/prng.js';

export interface ChaosOptions {
  dir: string;
  agents: number;
  durationMs: number;
  seed: number;
  /** Mean time between injected faults. */
  faultEveryMs: number;
  /** Pause between one client's writes. */
  writeEveryMs: number;
  /** Inject these kinds in turn instead of at random (a CI profile that covers each one). */
  schedule?: readonly FaultKind[];
  log?: (line: string) => void;
}

export interface ChaosResult {
  verdict: Verdict;
  faults: number;
  faultLog: string[];
  summary: string;
  ok: boolean;
}

const COLLECTIONS = ['readings', 'settings'];

/**
 * Poison writes go to a collection whose schema refuses them; retention is short, so that
 * snapshots happen and every retention run (each 2 s) has entries to remove.
 */
export const CHAOS_HUB_CONFIG = [
  'collections:',
  '  poison:',
  '    schema: { type: object, required: [never] }',
  'retention:',
  '  maxEntries: 500',
  '  intervalSeconds: 2',
].join('\n');

export const FAULT_KINDS = [
  'agent-kill',
  'hub-kill',
  'crash-before-commit',
  'crash-after-commit',
  'partition',
  'blackhole',
  'latency',
  'bandwidth',
  'reset',
  // Last, so that a scheduled run has written past retention's bound before it comes.
  'crash-mid-prune',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
/** The hub's fault point (hub/fault-points.ts) behind each crash. */
const CRASH_POINTS = {
  'crash-before-commit': 'hub.before-commit',
  'crash-after-commit': 'hub.after-commit',
  'crash-mid-prune': 'hub.mid-prune',
} as const;

/** How often each kind is picked at random. */
const WEIGHTS: Record<FaultKind, number> = {
  'agent-kill': 20,
  'hub-kill': 12,
  'crash-before-commit': 5,
  'crash-after-commit': 5,
  'crash-mid-prune': 5,
  partition: 20,
  blackhole: 10,
  latency: 10,
  bandwidth: 8,
  reset: 10,
};

/**
 * Runs a fleet of real processes under a write workload while injecting faults at random,
 * then heals everything, waits for the fleet to quiesce, and checks the databases.
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const random = prng(options.seed);
  const log = options.log ?? (() => undefined);
  const config = join(options.dir, 'hub.yaml');
  writeFileSync(config, CHAOS_HUB_CONFIG);
  const fleet = new ProcessFleet(options.dir, ['--config', config]);
  const history = new History();
  const ids = Array.from({ length: options.agents }, (_, i) => `pi-${i}`);
  try {
    await fleet.startHub();
    for (const id of ids) await fleet.addAgent(id);
    const deadline = Date.now() + options.durationMs;
    // Writers and the sampler run until the injector is done: at the deadline, or later if the
    // schedule has not yet injected every kind once (a slow machine).
    let injecting = true;
    const until = (): boolean => injecting;
    const clients = ids.map((id) => writer(fleet, id, history, random, until, options.writeEveryMs));
    const injector = inject(fleet, ids, history, random, deadline, options, log).finally(() => {
      injecting = false;
    });
    const sampler = sample(fleet, ids, history, until);
    await Promise.all([...clients, injector, sampler]);
    log(`healing after ${history.faults.length} faults; ${history.writes.length} writes acknowledged`);
    await fleet.quiesce(180_000);
    await fleet.close(); // quiet: every write acknowledged is settled; stop before reading the files
    const verdict = check(options.dir, ids, history);
    const summary = summaryLine(verdict, history.faults.length, options.seed);
    return { verdict, faults: history.faults.length, faultLog: history.faults, summary, ok: clean(verdict) };
  } finally {
    await fleet.close();
  }
}

/** One client writing through one agent's HTTP API until `until` (a time, or a condition), recording what was acknowledged. */
export async function writer(
  fleet: ProcessFleet,
  id: string,
  history: History,
  random: () => number,
  until: number | (() => boolean),
  everyMs: number,
): Promise<void> {
  const going = typeof until === 'number' ? () => Date.now() < until : until;
  let n = 0;
  while (going()) {
    const roll = random();
    const poison = roll < 0.01;
    const collection = poison ? 'poison' : COLLECTIONS[Math.floor(random() * COLLECTIONS.length)]!;
    const key = collection === 'settings' ? `s${Math.floor(random() * 10)}` : `${id}-${Math.floor(random() * 200)}`;
    const durability = roll > 0.9 ? 'hub' : 'local';
    const del = !poison && roll > 0.85 && roll <= 0.9;
    history.attempted += 1;
    try {
      const url = `${fleet.agentUrl(id)}/v1/docs/${collection}/${key}${durability === 'hub' ? '?durability=hub&timeoutMs=3000' : ''}`;
      const response = await http<{ incarnation: string; seq: number; lsn?: number }>(
        del ? 'DELETE' : 'PUT',
        url,
        del ? undefined : { by: id, n: n++ },
      );
      // Only a 200 is a promise; a 504 (hub durability not reached in time) is stored but not promised.
      if (response.status === 200) {
        history.writes.push({
          agentId: id,
          incarnation: response.body.incarnation,
          seq: response.body.seq,
          collection,
          key,
          durability,
          poison,
          ...(response.body.lsn !== undefined && { lsn: response.body.lsn }),
        });
      }
    } catch {
      // The agent is down (killed): nothing was acknowledged.
    }
    await sleep(everyMs * (0.5 + random()));
  }
}

async function inject(
  fleet: ProcessFleet,
  ids: string[],
  history: History,
  random: () => number,
  deadline: number,
  options: ChaosOptions,
  log: (l: string) => void,
): Promise<void> {
  const pick = (): string => ids[Math.floor(random() * ids.length)]!;
  const hold = (): number => 300 + random() * 2500;
  const total = Object.values(WEIGHTS).reduce((a, b) => a + b, 0);
  const randomKind = (): FaultKind => {
    let roll = random() * total;
    for (const kind of FAULT_KINDS) if ((roll -= WEIGHTS[kind]) < 0) return kind;
    return 'reset';
  };
  const wanted = options.schedule?.length ?? 0;
  while (Date.now() + options.faultEveryMs < deadline || history.faults.length < wanted) {
    await sleep(options.faultEveryMs * (0.5 + random()));
    const kind = options.schedule ? options.schedule[history.faults.length % options.schedule.length]! : randomKind();
    const id = pick();
    const proxy = fleet.proxy(id);
    let fault: string = `${kind} ${id}`;
    switch (kind) {
      case 'agent-kill':
        await fleet.killAgent(id);
        await sleep(hold());
        await fleet.startAgent(id);
        break;
      case 'hub-kill':
        fault = kind;
        await fleet.killHub();
        await sleep(hold());
        await fleet.startHub();
        break;
      case 'crash-before-commit':
      case 'crash-after-commit':
      case 'crash-mid-prune': {
        // The hub kills itself at that moment of its next commit (or, mid-prune, once retention
        // has removed part of the log: the config's retention runs every 2 s); then it is started again.
        fault = kind;
        await fleet.killHub();
        fleet.hubEnv = { OUTPOST_FAULT_POINTS: `${CRASH_POINTS[kind]}:1` };
        await fleet.startHub();
        const start = Date.now();
        while (fleet.hubAlive() && Date.now() - start < 5000) await sleep(50);
        fault += fleet.hubAlive() ? ` (${kind === 'crash-mid-prune' ? 'no prune' : 'no commit'} came; killed instead)` : ' (died there)';
        fleet.hubEnv = {};
        await fleet.killHub();
        await fleet.startHub();
        break;
      }
      case 'partition':
        proxy.mode = { kind: 'cut' };
        await sleep(hold() * 2);
        proxy.mode = { kind: 'pass' };
        break;
      case 'blackhole':
        proxy.mode = { kind: 'blackhole' };
        await sleep(hold());
        proxy.mode = { kind: 'pass' };
        break;
      case 'latency':
        proxy.latencyMs = 100 + random() * 400;
        await sleep(hold());
        proxy.latencyMs = 0;
        break;
      case 'bandwidth':
        proxy.bandwidth = 4096;
        await sleep(hold());
        proxy.bandwidth = 0;
        break;
      case 'reset':
        proxy.reset();
        break;
    }
    history.faults.push(fault);
    log(`fault ${history.faults.length}: ${fault}`);
  }
}

async function sample(fleet: ProcessFleet, ids: string[], history: History, going: () => boolean): Promise<void> {
  while (going()) {
    for (const id of ids) {
      const status = await fleet.agentStatus(id);
      if (status) history.sampleApplied(id, status.collections);
    }
    await sleep(250);
  }
}
