import { encodeHlc, type Hlc } from '../../shared/hlc.js';
import type { JsonValue } from '../../shared/values.js';
import type { ChangeBuckets, HubStore, IngestPlan, LogEntry } from '../../hub/store/hub-store.js';

/** A fixed, valid HLC per step, so that expected rows can be written out. */
export const hlcAt = (step: number): Hlc => encodeHlc(1_700_000_000_000 + step, 0);

/** A hub write (no agent identity), as the Ingestor hands it to `commit`. */
export function hubPut(collection: string, key: string, value: JsonValue, step = 0): LogEntry {
  return { collection, key, op: 'put', value, hlc: hlcAt(step), origin: 'hub', incarnation: null, seq: null };
}

export function hubDel(collection: string, key: string, step = 0): LogEntry {
  return { collection, key, op: 'del', value: undefined, hlc: hlcAt(step), origin: 'hub', incarnation: null, seq: null };
}

/** A scoped change: `entry` in the buckets `in`, out of those it `left`. */
export function scoped(entry: LogEntry, inBuckets: readonly string[], left: readonly string[] = []): LogEntry {
  const buckets: ChangeBuckets = { in: inBuckets, left };
  return { ...entry, buckets };
}

/** An agent's op `seq`, with a digest named after it. */
export function agentPut(collection: string, key: string, value: JsonValue, agent: { id: string; inc: string; seq: number }): LogEntry {
  return {
    collection,
    key,
    op: 'put',
    value,
    hlc: hlcAt(agent.seq),
    origin: agent.id,
    incarnation: agent.inc,
    seq: agent.seq,
    digest: `digest-${agent.id}-${agent.inc}-${agent.seq}`,
  };
}

/** What a group commit of these entries touches, as the Ingestor declares it. */
export function planOf(entries: readonly LogEntry[], extra: Partial<IngestPlan> = {}): IngestPlan {
  const agents = new Map<string, IngestPlan['agents'][number]>();
  for (const e of entries) {
    if (e.incarnation === null || e.seq === null) continue;
    const id = `${e.origin}\n${e.incarnation}`;
    const agent = agents.get(id) ?? { agentId: e.origin, incarnation: e.incarnation, seqs: [] };
    agent.seqs.push(e.seq);
    agents.set(id, agent);
  }
  return {
    agents: [...agents.values(), ...(extra.agents ?? [])],
    documents: [...entries.map((e): [string, string] => [e.collection, e.key]), ...(extra.documents ?? [])],
  };
}

/**
 * Commits entries as one group commit the way the Ingestor does: reads each document and
 * last seq first, commits, records each agent op as a committed run, advances last seqs,
 * collection heads and the heads of the buckets a scoped change is in or left. Returns the
 * LSNs handed out.
 */
export function commitGroup(store: HubStore, entries: readonly LogEntry[]): Promise<number[]> {
  return store.ingest(planOf(entries), (tx) => {
    const lsns: number[] = [];
    const heads = new Map<string, number>();
    for (const entry of entries) {
      tx.document(entry.collection, entry.key);
      const { lsn } = tx.commit(entry);
      lsns.push(lsn);
      heads.set(entry.collection, lsn);
      for (const bucket of [...(entry.buckets?.in ?? []), ...(entry.buckets?.left ?? [])]) tx.setBucketHead(bucket, lsn);
      if (entry.incarnation !== null && entry.seq !== null) {
        if (entry.seq <= tx.lastSeq(entry.origin, entry.incarnation)) throw new Error(`test wrote seq ${entry.seq} twice`);
        tx.putCommittedRun(entry.origin, entry.incarnation, entry.seq, entry.seq, lsn);
        tx.setLastSeq(entry.origin, entry.incarnation, entry.seq);
      }
    }
    for (const [collection, lsn] of heads) tx.setCollectionHead(collection, lsn);
    return lsns;
  });
}

/** Everything a failed group commit must have left as it was. */
export async function observable(store: HubStore, agents: Array<[string, string, number]> = []): Promise<unknown> {
  return {
    head: store.head,
    log: await store.readLog(0, undefined, 10_000, Number.MAX_SAFE_INTEGER),
    documents: await store.readDocuments(undefined, undefined, 10_000, Number.MAX_SAFE_INTEGER),
    heads: await store.collectionHeads(),
    conflicts: await store.conflicts({ limit: 1000 }),
    rejections: await store.rejections(1000),
    lastSeqs: await Promise.all([...new Set(agents.map(([id]) => id))].map((id) => store.lastSeqs(id))),
    outcomes: await Promise.all(agents.map(([id, inc, seq]) => store.outcomeOf(id, inc, seq))),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
