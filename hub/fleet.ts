import { verificationView, type VerificationView } from '../shared/verification-view.js';
import { noLabels, type Labels } from './labels.js';
import type { ReplicationTracker } from './replication-tracker.js';
import type { HubStore } from './store/hub-store.js';

export interface AgentView {
  agentId: string;
  online: boolean;
  /** Last connection, disconnection or status report (ISO time). */
  lastSeen?: string;
  address?: string;
  provisioned: boolean;
  revoked: boolean;
  /** The agent's labels (`outpost hub agents label`), names in order; scope rules read them. */
  labels: Labels;
  /** Highest seq the hub has processed, per incarnation. */
  lastSeq: Record<string, number>;
  /** Per collection the agent reported: applied LSN, and how far behind the hub it is. */
  collections: Record<string, { appliedLsn: number; lagChanges: number; lagSeconds: number }>;
  /** Writes the agent still had to upload at its last report, and how long the oldest had waited. */
  outboxDepth?: number;
  oldestPendingAgeMs?: number;
  /** The agent's software version, as it reported. */
  version?: string;
  /**
   * Where collections are scoped: the buckets the agent's scope has now (by its labels), the live
   * documents in them and their bytes, and the changes of those buckets it had not applied at its
   * last report (a bucket it did not report counts whole).
   */
  scope?: { buckets: number; documents: number; bytes: number; lagChanges?: number };
  /**
   * What verifying the agent's copy found, as it last reported: when its copy last matched the
   * hub's digests and at which LSN, divergences found, repairs made (documents rewritten or
   * removed, bytes moved) and the last one's cause and time.
   */
  verification?: VerificationView;
  /**
   * The device's transfer budget on a metered link, as it last reported: each period's budget and
   * spend in bytes, and the writes and blobs waiting for lack of it.
   */
  transfer?: {
    periods: Array<{ period: 'day' | 'month'; budgetBytes: number; spentBytes: number }>;
    waiting: { documents: number; blobs: number };
  };
}

export interface Presence {
  online: boolean;
  since: number;
  address?: string;
}

/**
 * The fleet as the hub sees it: provisioned agents (from `registry`, the default partition's
 * store), labelled ones (the hub's copy of every agent's labels), connected ones, and what each
 * reported of the partition whose log `store` is.
 */
export async function fleetStatus(
  store: HubStore,
  registry: HubStore,
  replication: ReplicationTracker,
  presence: ReadonlyMap<string, Presence>,
  labels: ReadonlyMap<string, Labels>,
  /** The bucket ids of an agent's scope now (none where nothing is scoped). */
  scopeOf: (agentId: string) => readonly string[] = () => [],
): Promise<AgentView[]> {
  const credentials = new Map((await registry.credentials()).map((c) => [c.agentId, c]));
  const ids = new Set([...credentials.keys(), ...labels.keys(), ...presence.keys(), ...replication.reports.keys()]);
  const heads = await store.collectionHeads();
  const now = Date.now();
  return Promise.all(
    [...ids].sort().map(async (agentId) => {
      const seen = presence.get(agentId);
      const report = replication.reports.get(agentId);
      const lastSeenAt = Math.max(seen?.since ?? 0, report?.at ?? 0);
      const collections: AgentView['collections'] = {};
      for (const [c, applied] of Object.entries(replication.appliedBy(agentId))) {
        const head = heads[c] ?? 0;
        const oldestMissing = head > applied ? await store.firstCommitAfter(c, applied) : undefined;
        collections[c] = {
          appliedLsn: applied,
          lagChanges: head > applied ? Math.max(0, await store.countAfter(c, applied, head)) : 0,
          lagSeconds: oldestMissing === undefined ? 0 : Math.max(0, (now - oldestMissing) / 1000),
        };
      }
      const credential = credentials.get(agentId);
      const scope = await scopeView(store, scopeOf(agentId), report?.buckets);
      return {
        agentId,
        online: seen?.online ?? false,
        ...(lastSeenAt > 0 && { lastSeen: new Date(lastSeenAt).toISOString() }),
        ...(seen?.address !== undefined && { address: seen.address }),
        provisioned: credential !== undefined,
        revoked: credential?.revokedAt !== null && credential?.revokedAt !== undefined,
        labels: labels.get(agentId) ?? noLabels(),
        lastSeq: await store.lastSeqs(agentId),
        collections,
        ...(report && { outboxDepth: report.outbox }),
        ...(report?.oldestPendingMs !== undefined && { oldestPendingAgeMs: report.oldestPendingMs }),
        ...(report?.version !== undefined && { version: report.version }),
        ...(scope && { scope }),
        ...(report?.verification && { verification: verificationView(report.verification) }),
        ...(report?.transfer && {
          transfer: {
            periods: report.transfer.ps.map(([period, budgetBytes, spentBytes]) => ({ period, budgetBytes, spentBytes })),
            waiting: { documents: report.transfer.wd, blobs: report.transfer.wb },
          },
        }),
      };
    }),
  );
}

async function scopeView(
  store: HubStore,
  buckets: readonly string[],
  reported: Readonly<Record<string, number>> | undefined,
): Promise<AgentView['scope']> {
  if (buckets.length === 0) return undefined;
  const size = await store.bucketSize(buckets);
  if (reported === undefined) return { buckets: buckets.length, ...size };
  const cursors = new Map(buckets.map((b) => [b, Object.hasOwn(reported, b) ? reported[b]! : 0]));
  return { buckets: buckets.length, ...size, lagChanges: await store.bucketBacklog(cursors) };
}
