import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { http } from '../helpers/processes.js';
import { sleep } from '../helpers/wait.js';
import { check, clean, summaryLine, type Verdict } from './checker.js';
import { History } from './history.js';
import { ProcessFleet } from './process-fleet.js';
import { prng } from '../helpers/prng.js';
import { linkTap } from './received.js';
import { injectRot, seedLedger } from './rot.js';
import { RELOAD_GRACE_MS } from './scope-check.js';
import { SCOPED_CONFIG_LINES, sitesOf } from './scope-plan.js';
import { spyAs } from './spy.js';
import { BLOB_COLLECTION, blobWriter } from './blobs.js';
import { baitFor, hubWriter, nextSiteOf, nextWrite, type PlannedWrite } from './workload.js';

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
  /** Pick at random among these kinds only (default: all), by their usual weights. */
  kinds?: readonly FaultKind[];
  log?: (line: string) => void;
}

export interface ChaosResult {
  verdict: Verdict;
  faults: number;
  faultLog: string[];
  summary: string;
  ok: boolean;
  /** Proof that the scoped workload ran and that its listeners listened. */
  scoped: {
    hubWrites: number;
    relabels: number;
    /** Changes of scoped collections the agents' links carried to them. */
    linkHeard: number;
    spyWindows: number;
    spyHeard: number;
  };
}

/**
 * Poison writes go to a collection whose schema refuses them; retention is short, so that
 * snapshots happen and every retention run (each 2 s) has entries to remove. Two collections
 * are scoped (see scope-plan.ts); the others reach every agent.
 */
export const CHAOS_HUB_CONFIG = [
  'collections:',
  '  poison:',
  '    schema: { type: object, required: [never] }',
  ...SCOPED_CONFIG_LINES,
  // Not a --dev hub: every agent logs in with its own token, and is granted every collection.
  // Blobs in the workload (blobs.ts): content apart from the log, uploaded through the same faults.
  `  ${BLOB_COLLECTION}:`,
  '    blobs: lazy',
  'access:',
  '  default: { read: ["*"], write: ["*"] }',
  'retention:',
  '  maxEntries: 500',
  '  intervalSeconds: 2',
].join('\n');

export const FAULT_KINDS = [
  'agent-kill',
  // Early, so that a scheduled run relabels twice when it goes round the kinds again.
  'relabel',
  'hub-kill',
  'crash-before-commit',
  'crash-after-commit',
  'partition',
  'blackhole',
  'latency',
  'bandwidth',
  'reset',
  'rot',
  // Last, so that a scheduled run has written past retention's bound before it comes.
  'crash-mid-prune',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
/**
 * The CI profile's schedule: every kind once, with a second relabel among the partitions and
 * throttled links, where a scope change most often crosses a device's reconnection.
 */
export const CI_SCHEDULE: readonly FaultKind[] = FAULT_KINDS.flatMap((kind): FaultKind[] =>
  kind === 'blackhole' ? [kind, 'relabel'] : [kind],
);
/** The hub's fault point (shared/fault-points.ts) behind each crash. */
const CRASH_POINTS = {
  'crash-before-commit': 'hub.before-commit',
  'crash-after-commit': 'hub.after-commit',
  'crash-mid-prune': 'hub.mid-prune',
} as const;

/** How long a spy listens as a killed agent (see spyAs): long enough to hear the hub's next writes. */
const SPY_LISTEN_MS = 1500;
/** Pause between two of the hub's own writes. */
const HUB_WRITE_EVERY_MS = 250;
/** Each agent's client puts a blob about this often. */
const BLOB_EVERY_MS = 2_000;

/** How often each kind is picked at random. */
const WEIGHTS: Record<FaultKind, number> = {
  'agent-kill': 20,
  relabel: 15,
  'hub-kill': 12,
  'crash-before-commit': 5,
  'crash-after-commit': 5,
  'crash-mid-prune': 5,
  partition: 20,
  blackhole: 10,
  latency: 10,
  bandwidth: 8,
  reset: 10,
  rot: 8,
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
  // Every agent's link is tapped from the start: what its credentials received, all run long.
  fleet.tapDown = (id) => linkTap(history, id);
  try {
    await fleet.startHub();
    await fleet.provision(ids, (id) => ({ site: sitesOf(id)[0] }));
    for (const id of ids) {
      history.sites.set(id, sitesOf(id)[0]);
      await fleet.addAgent(id);
    }
    await seedLedger(fleet, ids, history);
    const deadline = Date.now() + options.durationMs;
    // Writers and the sampler run until the injector is done: at the deadline, or later if the
    // schedule has not yet injected every kind once (a slow machine).
    let injecting = true;
    const until = (): boolean => injecting;
    const clients = ids.map((id) => writer(fleet, id, history, random, until, options.writeEveryMs));
    const blobClients = ids.map((id) => blobWriter(fleet, id, history, random, until, BLOB_EVERY_MS));
    const injector = inject(fleet, ids, history, random, deadline, options, log).finally(() => {
      injecting = false;
    });
    const sampler = sample(fleet, ids, history, until);
    const hub = hubWriter(fleet, ids, history, random, until, HUB_WRITE_EVERY_MS);
    await Promise.all([...clients, ...blobClients, injector, sampler, hub]);
    log(`healing after ${history.faults.length} faults; ${history.writes.length} writes acknowledged`);
    await fleet.quiesce(180_000);
    await fleet.close(); // quiet: every write acknowledged is settled; stop before reading the files
    const verdict = check(options.dir, ids, history);
    const summary = summaryLine(verdict, history.faults.length, options.seed);
    const scoped = {
      hubWrites: history.hubWrites,
      relabels: history.relabels.length,
      linkHeard: history.received.filter((r) => r.via === 'link').reduce((n, r) => n + r.changes.length, 0),
      spyWindows: history.spyWindows,
      spyHeard: history.spyHeard,
    };
    return { verdict, faults: history.faults.length, faultLog: history.faults, summary, ok: clean(verdict), scoped };
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
  const others = [...fleet.agents.keys()].filter((other) => other !== id);
  let n = 0;
  while (going()) {
    // While the agent is being relabelled (and for the grace after), the hub may judge its writes
    // by either labels: a move meant as outside (into the old site) could commit, and its
    // document then lie outside the new scope. Its client writes no site documents then.
    const site = history.relabelling(id, Date.now(), RELOAD_GRACE_MS) ? undefined : history.sites.get(id);
    const planned = nextWrite(id, others, site, random, n++);
    history.attempted += 1;
    try {
      await writeThrough(fleet, id, history, planned);
    } catch {
      // The agent is down (killed): nothing was acknowledged.
    }
    await sleep(everyMs * (0.5 + random()));
  }
}

/**
 * Makes one planned write through agent `id`'s HTTP API and records it in `history` if it was
 * acknowledged. Returns the HTTP status; throws when the agent does not answer (it is down).
 */
export async function writeThrough(fleet: ProcessFleet, id: string, history: History, write: PlannedWrite): Promise<number> {
  const { collection, key, value, durability, poison, scope } = write;
  const issuedAt = Date.now();
  const url = `${fleet.agentUrl(id)}/v1/docs/${collection}/${encodeURIComponent(key)}${durability === 'hub' ? '?durability=hub&timeoutMs=3000' : ''}`;
  const response = await http<{ incarnation: string; seq: number; lsn?: number }>(value === undefined ? 'DELETE' : 'PUT', url, value);
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
      ...(scope && { scope, issuedAt }),
      ...(response.body.lsn !== undefined && { lsn: response.body.lsn }),
    });
  }
  return response.status;
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
  const kinds = options.kinds ?? FAULT_KINDS;
  const total = kinds.reduce((sum, kind) => sum + WEIGHTS[kind], 0);
  const randomKind = (): FaultKind => {
    let roll = random() * total;
    for (const kind of kinds) if ((roll -= WEIGHTS[kind]) < 0) return kind;
    return kinds[0]!;
  };
  const wanted = options.schedule?.length ?? 0;
  while (Date.now() + options.faultEveryMs < deadline || history.faults.length < wanted) {
    await sleep(options.faultEveryMs * (0.5 + random()));
    const kind = options.schedule ? options.schedule[history.faults.length % options.schedule.length]! : randomKind();
    const id = pick();
    const proxy = fleet.proxy(id);
    let fault: string = `${kind} ${id}`;
    switch (kind) {
      case 'agent-kill': {
        // While it is down, a spy with its credentials listens as it: the broker admits one
        // connection per device id, so this is when another can hold them.
        await fleet.killAgent(id);
        const started = Date.now();
        try {
          const others = ids.filter((other) => other !== id);
          const bait = (): Promise<void> => baitFor(fleet, id, history.sites.get(id));
          const heard = await spyAs(history, fleet.mqttUrl, id, fleet.tokenOf(id), others, SPY_LISTEN_MS, bait);
          history.spyWindows += 1;
          history.spyHeard += heard;
          fault += ` (a spy with its credentials heard ${heard} scoped changes)`;
        } catch (error) {
          fault += ` (no spy: ${error instanceof Error ? error.message : String(error)})`;
        }
        await sleep(Math.max(0, hold() - (Date.now() - started)));
        await fleet.startAgent(id);
        break;
      }
      case 'relabel': {
        // As an operator would: the CLI, from another process, while everything runs.
        const site = nextSiteOf(id, history.sites.get(id));
        fault = `relabel ${id} site=${site}`;
        // Recorded as under way (never done) until the command ends.
        const relabel = { agentId: id, site, startedAt: Date.now(), doneAt: Number.POSITIVE_INFINITY };
        history.relabels.push(relabel);
        try {
          await fleet.setLabel(id, 'site', site);
          history.sites.set(id, site);
          relabel.doneAt = Date.now();
        } catch (error) {
          // Whether the label changed is unknown: the agent writes no site documents from now
          // on, and a refusal of those it wrote is never held against the hub.
          fault += ` (failed: ${error instanceof Error ? error.message : String(error)})`;
          history.sites.delete(id);
        }
        break;
      }
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
      case 'rot': {
        const rot = await injectRot(fleet, id, random);
        history.rots.push(rot);
        fault = `rot ${id} (${rot.kind} ${rot.collection}/${rot.key}, ${rot.detected ? 'detected' : 'NOT detected'})`;
        break;
      }
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
