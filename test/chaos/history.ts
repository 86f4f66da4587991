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
}

/** Everything the workload and the fault injector did, for the checker. */
export class History {
  readonly writes: AcknowledgedWrite[] = [];
  readonly faults: string[] = [];
  attempted = 0;
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
