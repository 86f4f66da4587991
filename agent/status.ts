import { SOFTWARE_VERSION } from '../shared/protocol-version.js';
import { DEFAULT_PARTITION } from '../shared/topics.js';
import type { Lanes } from './lanes.js';
import type { AgentStore } from './store/agent-store.js';
import type { AgentStatus } from './types.js';

/** What the agent's status reads from outside the store and the lanes. */
export interface StatusContext {
  agentId: string;
  connected: boolean;
  lastSyncAt: number | undefined;
  nextWindow: Date | undefined;
}

/** The agent's status as an app reads it: the default partition's figures at the top, the others' under `partitions`. */
export function agentStatus(store: AgentStore, lanes: Lanes, context: StatusContext): AgentStatus {
  const cursors = store.replica.cursors();
  const pending = store.outbox.pendingByCollection();
  const watermark = store.partitions.watermarkOf(DEFAULT_PARTITION);
  const now = Date.now();
  const collections: AgentStatus['collections'] = {};
  for (const c of new Set([...Object.keys(cursors), ...Object.keys(pending)])) {
    const p = pending[c];
    const lane = lanes.laneOf(c);
    const applied = Math.max(cursors[c] ?? 0, lane?.watermark ?? 0);
    const lag = Math.max(0, (lane?.headOf(c) ?? 0) - applied);
    collections[c] = { appliedLsn: cursors[c] ?? 0, lag, pending: p?.pending ?? 0, ...(p && { oldestPendingAgeMs: now - p.oldestAt }) };
  }
  const partitions: NonNullable<AgentStatus['partitions']> = {};
  for (const lane of lanes) {
    if (lane.partition === DEFAULT_PARTITION) continue;
    const laneCursors = Object.entries(cursors)
      .filter(([c]) => lane.inPartition(c))
      .map(([, lsn]) => lsn);
    partitions[lane.partition] = {
      incarnation: store.partitions.incarnationOf(lane.partition),
      watermark: lane.watermark,
      appliedLsn: Math.max(lane.watermark, ...laneCursors),
    };
  }
  const defaultCursors = Object.entries(cursors)
    .filter(([c]) => lanes.partitionOf(c) === DEFAULT_PARTITION)
    .map(([, lsn]) => lsn);
  const { agentId, connected, lastSyncAt, nextWindow } = context;
  return {
    agentId,
    incarnation: store.partitions.incarnationOf(DEFAULT_PARTITION),
    connected,
    outboxDepth: store.outbox.pendingCount(),
    catchingUp: lanes.pulling,
    appliedLsn: Math.max(watermark, ...defaultCursors),
    watermark,
    collections,
    ...(Object.keys(partitions).length > 0 && { partitions }),
    ...(lastSyncAt !== undefined && { lastSyncAt: new Date(lastSyncAt).toISOString() }),
    ...(nextWindow && { nextWindow: nextWindow.toISOString() }),
  };
}

/**
 * Tells each partition's hub what this device has applied of that partition's collections, and
 * what waits to go up: lag tracking and replica acknowledgements.
 */
export function reportStatus(store: AgentStore, lanes: Lanes): void {
  const pending = Object.entries(store.outbox.pendingByCollection());
  const cursors = Object.entries(store.replica.cursors());
  for (const lane of lanes) {
    const queued = pending.filter(([c]) => lane.inPartition(c)).map(([, p]) => p);
    const oldestAt = Math.min(...queued.map((p) => p.oldestAt));
    lane.send([
      'status',
      {
        applied: Object.fromEntries(cursors.filter(([c]) => lane.inPartition(c))),
        outbox: queued.reduce((sum, p) => sum + p.pending, 0),
        ver: SOFTWARE_VERSION,
        ...(Number.isFinite(oldestAt) && { oldest: Math.max(0, Date.now() - oldestAt) }),
      },
    ]);
  }
}
