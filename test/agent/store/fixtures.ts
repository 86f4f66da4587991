import { afterEach } from 'vitest';
import { AgentStore } from '../../../agent/store/agent-store.js';
import type { AppendResult, Buffering } from '../../../agent/store/outbox.js';
import type { NewWrite } from '../../../agent/store/writes.js';
import { encodeHlc, type Hlc } from '../../../shared/hlc.js';
import type { Change } from '../../../shared/messages.js';
import { encodeValue } from '../../../shared/value-bytes.js';
import type { JsonValue } from '../../../shared/values.js';
import { DEFAULT_PARTITION } from '../../../shared/topics.js';
import { tempDir } from '../../helpers/temp.js';

/** The agent store's suite: real SQLite files in temp directories, closed after each test. */
const opened: AgentStore[] = [];
afterEach(() => {
  for (const store of opened.splice(0)) store.close();
});

/** Opens the store kept in `dir` (a fresh directory by default), again if it was opened before (a restart). */
export function openStore(dir = tempDir('agent-store')): AgentStore {
  const store = new AgentStore(dir);
  opened.push(store);
  return store;
}

let t = 1_000;
/** A fresh HLC, later than every one handed out before. */
export const hlc = (): Hlc => encodeHlc(t++, 0);

/** A committed change from the hub: a put of `v` (as its bytes), or a delete when `v` is undefined. */
export const change = (lsn: number, k: string, v?: JsonValue, c = 'docs'): Change => ({
  lsn,
  c,
  k,
  op: v === undefined ? 'del' : 'put',
  ...(v !== undefined && { v: encodeValue(v) }),
  hlc: hlc(),
  o: 'pi-x',
});

/**
 * A write as a test states it: its value plain (stored as its bytes), to the default partition
 * and stamped now unless it says otherwise.
 */
export type TestWrite = Omit<NewWrite, 'partition' | 'hlc' | 'value'> & { value: JsonValue | undefined; partition?: string; hlc?: Hlc };

/** The write as the agent stores it: its value encoded, as the agent encodes it once. */
export const stored = (w: TestWrite): NewWrite => ({
  ...w,
  value: w.value === undefined ? undefined : encodeValue(w.value),
  partition: w.partition ?? DEFAULT_PARTITION,
  hlc: w.hlc ?? hlc(),
});

export const put = (key: string, value: JsonValue, more: Partial<TestWrite> = {}): TestWrite => ({
  collection: 'docs',
  key,
  op: 'put',
  value,
  ...more,
});

/** Appends writes in one transaction, under buffering policies if given. */
export function append(store: AgentStore, writes: readonly TestWrite[], policyFor?: (collection: string) => Buffering): AppendResult {
  return store.outbox.append(writes.map(stored), hlc(), policyFor);
}

/** Appends writes that no policy refuses; returns their seqs. */
export function appendAll(store: AgentStore, writes: readonly TestWrite[]): number[] {
  return append(store, writes).seqs.map((seq) => {
    if (typeof seq !== 'number') throw seq;
    return seq;
  });
}

/** Seq, key and op of a partition's pending ops, as they would be uploaded. */
export const queued = (store: AgentStore, partition = DEFAULT_PARTITION): Array<[number, string, string]> =>
  store.outbox.pendingFrom(partition, 1, 1000, 1 << 20).map((o) => [o.seq, o.k, o.op]);
