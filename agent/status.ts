import { SOFTWARE_VERSION } from '../shared/protocol-version.js';
import { DEFAULT_PARTITION } from '../shared/topics.js';
import type { Lanes } from './lanes.js';
import type { AgentStore } from './store/agent-store.js';
import type { VerifyReport } from '../shared/messages.js';
import { verificationView } from '../shared/verification-view.js';
import type { ScrubStatus } from './scrubber.js';
import type { BudgetPeriod } from './transfer-budget.js';
import type { AgentStatus, AgentVerification } from './types.js';

/** The most buckets a status report names (the protocol's bound): a device holding more reports part of its lag. */
const MAX_BUCKETS_REPORTED = 1024;

/** What the agent's status reads from outside the store and the lanes. */
export interface StatusContext {
  agentId: string;
  connected: boolean;
  lastSyncAt: number | undefined;
  nextWindow: Date | undefined;
  verification: VerifyReport;
  scrub: ScrubStatus;
}

/** The agent's status as an app reads it: the default partition's figures at the top, the others' under `partitions`. */
export function agentStatus(store: AgentStore, lanes: Lanes, context: StatusContext): AgentStatus {
  const cursors = store.replica.cursors();
  const pending = store.outbox.pendingByCollection();
  // Per partition: its sequence space and how far its log is applied here.
  const progress = new Map<string, { incarnation: string; watermark: number; appliedLsn: number }>();
  for (const lane of lanes) {
    const watermark = lane.watermark;
    const laneCursors = Object.entries(cursors)
      .filter(([c]) => lane.inPartition(c))
      .map(([, lsn]) => lsn);
    progress.set(lane.partition, {
      incarnation: store.partitions.incarnationOf(lane.partition),
      watermark,
      appliedLsn: Math.max(watermark, ...laneCursors),
    });
  }
  const now = Date.now();
  const collections: AgentStatus['collections'] = {};
  for (const c of new Set([...Object.keys(cursors), ...Object.keys(pending)])) {
    const p = pending[c];
    const applied = Math.max(cursors[c] ?? 0, progress.get(lanes.partitionOf(c))?.watermark ?? 0);
    const lag = Math.max(0, (lanes.laneOf(c)?.headOf(c) ?? 0) - applied);
    collections[c] = { appliedLsn: cursors[c] ?? 0, lag, pending: p?.pending ?? 0, ...(p && { oldestPendingAgeMs: now - p.oldestAt }) };
  }
  const { incarnation, watermark, appliedLsn } = progress.get(DEFAULT_PARTITION)!;
  const partitions = Object.fromEntries([...progress].filter(([partition]) => partition !== DEFAULT_PARTITION));
  // Lost versions still to report to a restored hub, per partition that has any.
  const lost: Record<string, number> = {};
  for (const lane of lanes) if (lane.lostPending > 0) lost[lane.partition] = lane.lostPending;
  const lostPending = Object.values(lost).reduce((sum, n) => sum + n, 0);
  const { agentId, connected, lastSyncAt, nextWindow } = context;
  const scope = scopeStatus(store, lanes);
  const verification = verificationStatus(
    context.verification,
    context.scrub,
    [...lanes].flatMap((lane) => lane.verifier.repairing),
  );
  return {
    agentId,
    incarnation,
    connected,
    outboxDepth: store.outbox.pendingCount(),
    catchingUp: lanes.pulling,
    appliedLsn,
    watermark,
    collections,
    ...(Object.keys(partitions).length > 0 && { partitions }),
    ...(lostPending > 0 && { restore: { lostPending, partitions: lost } }),
    ...(scope && { scope }),
    verification,
    ...(lastSyncAt !== undefined && { lastSyncAt: new Date(lastSyncAt).toISOString() }),
    ...(nextWindow && { nextWindow: nextWindow.toISOString() }),
  };
}

function verificationStatus(r: VerifyReport, scrub: ScrubStatus, repairing: string[]): AgentVerification {
  return { ...verificationView(r), repairing, scrub };
}

/** The buckets of the device's scope, of every partition (bucket ids name their collection, so they never clash), or undefined without. */
function scopeStatus(store: AgentStore, lanes: Lanes): AgentStatus['scope'] {
  const buckets: Record<string, number> = {};
  let behind = 0;
  for (const lane of lanes) {
    for (const [bucket, { cursor, snapshot }] of store.scope.held(lane.partition)) {
      const applied = snapshot ? -1 : cursor;
      buckets[bucket] = applied;
      if (applied < 0 || (lane.bucketHeads.get(bucket) ?? 0) > applied) behind += 1;
    }
  }
  return Object.keys(buckets).length > 0 ? { buckets, behind } : undefined;
}

/**
 * Tells each partition's hub what this device has applied of that partition's collections, and
 * what waits to go up, and which of its writes wait for replicas: lag tracking and replica
 * acknowledgements, which a hub that restarted learns again this way.
 */
export function reportStatus(store: AgentStore, lanes: Lanes, verification: VerifyReport, budget: AgentStatus['budget']): void {
  // What it reports applied counts toward other devices' replica waits: it must survive a power cut.
  store.flush();
  const pending = Object.entries(store.outbox.pendingByCollection());
  const cursors = Object.entries(store.replica.cursors());
  for (const lane of lanes) {
    const queued = pending.filter(([c]) => lane.inPartition(c)).map(([, p]) => p);
    const oldestAt = Math.min(...queued.map((p) => p.oldestAt));
    const waits = lane.replicaWaits();
    const buckets = [...store.scope.held(lane.partition)].slice(0, MAX_BUCKETS_REPORTED);
    const verify = lane.verifier.question();
    lane.send([
      'status',
      {
        applied: Object.fromEntries(cursors.filter(([c]) => lane.inPartition(c))),
        outbox: queued.reduce((sum, p) => sum + p.pending, 0),
        ver: SOFTWARE_VERSION,
        // Asks the hub for its digests at `applied`, and its buckets' at their cursors, when a check is due; says what verifying found.
        ...verify,
        vf: verification,
        ...(Number.isFinite(oldestAt) && { oldest: Math.max(0, Date.now() - oldestAt) }),
        ...(waits.length > 0 && { waits: { inc: store.partitions.incarnationOf(lane.partition), list: waits } }),
        ...(buckets.length > 0 && { bs: Object.fromEntries(buckets.map(([b, s]) => [b, s.snapshot ? 0 : Math.max(0, s.cursor)])) }),
        ...(budget && {
          tb: {
            ps: budget.periods.map((p): [BudgetPeriod['period'], number, number] => [p.period, p.budgetBytes, p.spentBytes]),
            wd: budget.waiting.documents,
            wb: budget.waiting.blobs,
          },
        }),
      },
    ]);
  }
}

/** Status reports to the hub wait this long, so a burst of changes sends one. */
const STATUS_DEBOUNCE_MS = 50;

/**
 * Tells each partition's hub what this device has applied of its collections (reportStatus),
 * debounced: lag tracking and replica acknowledgements.
 */
export class StatusReporter {
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(private readonly report: () => void) {}

  schedule(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#stopped) this.report();
    }, STATUS_DEBOUNCE_MS);
    this.#timer.unref?.();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }
}
