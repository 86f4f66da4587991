import type { Rot } from './rot.js';
/** A write whose HTTP request was answered 200: the agent promised it. */
export interface AcknowledgedWrite {
  agentId: string;
  incarnation: string;
  seq: number;
  collection: string;
  key: string;
  /** `local` or `hub`; a `hub` write also got its LSN back. */
  durability: 'local' | 'hub';
  lsn?: number;
  /** Written to a collection whose schema refuses it: the hub must reject it, and say so. */
  poison: boolean;
  /**
   * A write to a scoped collection: `outside`, one its agent's scope never allows (another
   * site, another agent's key, a move away from its site), which the hub must refuse as
   * `out_of_scope`; `own-site`, of its site as labelled when it was written (`issuedAt`), which
   * only a relabel coming after may make the hub refuse.
   */
  scope?: 'outside' | 'own-site';
  issuedAt?: number;
}

/** An operator's relabelling of an agent: the CLI command's start and end (infinite if it failed: its effect is unknown). */
export interface Relabel {
  agentId: string;
  site: string;
  startedAt: number;
  doneAt: number;
}

/** A change of a scoped collection, as an agent's connection or a spy holding its credentials received it. */
export interface ReceivedChange {
  c: string;
  k: string;
  op: string;
  v?: unknown;
}

/**
 * What reached an agent's credentials that concerns scoped collections: `via` its own link (the
 * agent process's connections, seen at its proxy) or a `spy` connection; the message's kind, the
 * topic, the bucket it names, its changes of scoped collections, and for a scope message the
 * buckets it tells.
 */
export interface Received {
  agentId: string;
  via: 'link' | 'spy';
  topic: string;
  kind: string;
  bucket?: string;
  changes: ReceivedChange[];
  told?: string[];
  /** What could not be decoded (it travelled all the same). */
  problem?: string;
}

/** Everything the workload and the fault injector did, for the checker. */
/** A blob whose PUT an agent answered 200: its content and write are durable on the device. */
export interface AcknowledgedBlob {
  agentId: string;
  key: string;
  sha256: string;
  size: number;
}

export class History {
  readonly writes: AcknowledgedWrite[] = [];
  /** Blobs acknowledged (`media`, each under a key of its own): each must commit once, its content whole at the hub. */
  readonly blobs: AcknowledgedBlob[] = [];
  readonly faults: string[] = [];
  /** Damage done to agents' databases (the rot fault), and whether each agent reported it. */
  readonly rots: Rot[] = [];
  attempted = 0;
  readonly relabels: Relabel[] = [];
  readonly received: Received[] = [];
  /** Each agent's site as last set (undefined: unlabelled, it writes no site documents). */
  readonly sites = new Map<string, string>();
  /** Hub-side writes of scoped collections committed (moves between sites among them). */
  hubWrites = 0;
  /** Listening windows of spy connections, and what they heard of scoped collections. */
  spyWindows = 0;
  spyHeard = 0;

  /** Whether a relabel of `agentId` ended at or after `time` (or failed, or is under way, at any time). */
  relabelledSince(agentId: string, time: number): boolean {
    return this.relabels.some((r) => r.agentId === agentId && r.doneAt >= time);
  }

  /**
   * Whether `agentId` is being relabelled at `time`, or was within `graceMs` before it: the hub
   * may judge its writes by either labels then.
   */
  relabelling(agentId: string, time: number, graceMs: number): boolean {
    return this.relabels.some((r) => r.agentId === agentId && r.startedAt <= time && time <= r.doneAt + graceMs);
  }
  /** Applied LSN per agent and collection as last sampled, to catch an agent going backwards. */
  readonly #applied = new Map<string, number>();
  readonly regressions: string[] = [];

  sampleApplied(agentId: string, collections: Record<string, { appliedLsn: number }>): void {
    for (const [c, { appliedLsn }] of Object.entries(collections)) {
      const id = `${agentId}/${c}`;
      const before = this.#applied.get(id) ?? 0;
      if (appliedLsn < before) this.regressions.push(`${id} went from LSN ${before} back to ${appliedLsn}`);
      this.#applied.set(id, Math.max(before, appliedLsn));
    }
  }
}
