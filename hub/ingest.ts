import { decodeHlc, type Hlc, type HybridClock } from '../shared/hlc.js';
import type { BatchMessage, Change, ChangesMessage, DownMessage, OpResult, WriteOp } from '../shared/messages.js';
import { encodeCbor } from '../shared/codec.js';
import { limits as defaultLimits, type Limits } from '../shared/limits.js';
import { applyPatch, checkCollectionName, checkKey, checkValue, isPlainObject, type JsonValue } from '../shared/values.js';
import type { SqliteHubStore, StoredDocument } from './store/sqlite-store.js';

export interface BatchRequest {
  /** From the authenticated connection, never from the payload. */
  agentId: string;
  batch: BatchMessage[1];
}

export interface IngestOutput {
  replies: Array<{ agentId: string; message: DownMessage }>;
  /** Committed change sets to publish, in commit order. */
  changeSets: ChangesMessage[];
}

export interface IngestOptions {
  /** How far ahead of the hub's clock an op's HLC may be before it is rejected. */
  maxFutureSkewMs: number;
  limits: Limits;
  /** Largest change set published in one message, in approximate bytes. */
  maxChangeSetBytes: number;
}

export const defaultIngestOptions: IngestOptions = {
  maxFutureSkewMs: 60_000,
  limits: defaultLimits,
  maxChangeSetBytes: defaultLimits.maxMessageBytes / 2,
};

/**
 * Turns uploaded batches into commits. All batches given to one `ingest` call share one
 * transaction (group commit). For each agent incarnation the sequence check and the advance
 * of `lastSeq` happen in the same transaction as the writes, so an op is applied at most once
 * however often it is delivered, and its outcome is kept to be re-acked.
 */
export class Ingestor {
  constructor(
    private readonly store: SqliteHubStore,
    private readonly clock: HybridClock,
    private readonly options: IngestOptions = defaultIngestOptions,
  ) {}

  ingest(requests: readonly BatchRequest[]): IngestOutput {
    return this.store.transaction(() => {
      const committed = new Map<string, Change[]>();
      const replies: IngestOutput['replies'] = [];
      for (const { agentId, batch } of requests) {
        replies.push(...this.#ingestBatch(agentId, batch, committed));
      }
      return { replies, changeSets: this.#changeSets(committed) };
    });
  }

  #ingestBatch(agentId: string, batch: BatchMessage[1], committed: Map<string, Change[]>): IngestOutput['replies'] {
    const { inc } = batch;
    let last = this.store.lastSeq(agentId, inc);
    const startLast = last;
    const results: OpResult[] = [];
    let expected: number | undefined;
    for (const op of batch.ops) {
      if (op.seq <= last) {
        const original = this.store.outcome(agentId, inc, op.seq);
        results.push(original ? { seq: op.seq, ...original, dup: true } : { seq: op.seq, outcome: 'duplicate' });
        continue;
      }
      if (op.seq !== last + 1) {
        expected = last + 1;
        break;
      }
      const result = this.#apply(agentId, inc, op, committed);
      this.store.putOutcome(agentId, inc, result);
      results.push(result);
      last = op.seq;
    }
    if (last !== startLast) this.store.setLastSeq(agentId, inc, last);
    const hlc = this.clock.tick();
    const replies: IngestOutput['replies'] = [];
    if (results.length > 0) replies.push({ agentId, message: ['ack', { inc, hlc, results }] });
    if (expected !== undefined) replies.push({ agentId, message: ['resync', { inc, hlc, expected }] });
    return replies;
  }

  #apply(agentId: string, inc: string, op: WriteOp, committed: Map<string, Change[]>): OpResult {
    const problem = this.#validate(op);
    if (problem) return { seq: op.seq, outcome: 'rejected', reason: problem.reason, detail: problem.detail };
    this.clock.observe(op.hlc as Hlc);

    const current = this.store.document(op.c, op.k);
    if (current && !winsLww(op.hlc, agentId, current)) {
      return {
        seq: op.seq,
        outcome: 'conflict',
        lsn: current.version,
        reason: 'lww',
        detail: `a newer write (version ${current.version}, hlc ${current.hlc}, origin ${current.origin}) already holds this document`,
      };
    }
    const value = op.op === 'del' ? undefined
      : op.op === 'patch' ? applyPatch(current?.deleted ? undefined : current?.value, op.v as { [f: string]: JsonValue })
      : (op.v as JsonValue);
    const kind = op.op === 'del' ? 'del' : 'put';
    const lsn = this.store.commit({
      collection: op.c, key: op.k, op: kind, value, hlc: op.hlc as Hlc, origin: agentId, incarnation: inc, seq: op.seq,
    });
    const change: Change = { lsn, c: op.c, k: op.k, op: kind, ...(value !== undefined && { v: value }), hlc: op.hlc, o: agentId };
    const list = committed.get(op.c);
    if (list) list.push(change);
    else committed.set(op.c, [change]);
    return { seq: op.seq, outcome: 'committed', lsn };
  }

  #validate(op: WriteOp): { reason: OpResult['reason'] & string; detail: string } | undefined {
    const { limits } = this.options;
    const nameProblem = checkCollectionName(op.c) ?? checkKey(op.k, limits.maxKeyBytes);
    if (nameProblem) return nameProblem;
    if (op.op !== 'del') {
      if (op.v === undefined) return { reason: 'invalid_value', detail: `${op.op} needs a value` };
      if (op.op === 'patch' && !isPlainObject(op.v)) return { reason: 'invalid_value', detail: 'patch needs an object of fields' };
      const valueProblem = checkValue(op.v, limits.maxValueDepth);
      if (valueProblem) return valueProblem;
      const size = encodeCbor(op.v).length;
      if (size > limits.maxValueBytes) {
        return { reason: 'too_large', detail: `value of ${size} bytes exceeds the limit of ${limits.maxValueBytes} bytes` };
      }
    }
    const skew = decodeHlc(op.hlc as Hlc).wall - Date.now();
    if (skew > this.options.maxFutureSkewMs) {
      return { reason: 'clock_skew', detail: `timestamp is ${Math.round(skew / 1000)} s ahead of the hub; fix the device clock` };
    }
    return undefined;
  }

  /** Splits each collection's new changes into messages that chain by `prev`, and advances heads. */
  #changeSets(committed: Map<string, Change[]>): ChangesMessage[] {
    const sets: ChangesMessage[] = [];
    for (const [collection, changes] of committed) {
      let prev = this.store.collectionHead(collection);
      let chunk: Change[] = [];
      let bytes = 0;
      const flush = (): void => {
        if (chunk.length === 0) return;
        sets.push(['changes', { c: collection, prev, hlc: this.clock.tick(), changes: chunk }]);
        prev = chunk[chunk.length - 1]!.lsn;
        chunk = [];
        bytes = 0;
      };
      for (const change of changes) {
        const size = approximateSize(change);
        if (bytes + size > this.options.maxChangeSetBytes) flush();
        chunk.push(change);
        bytes += size;
      }
      flush();
      this.store.setCollectionHead(collection, prev);
    }
    return sets;
  }
}

/** Last-writer-wins: the higher HLC wins; equal HLCs are ordered by origin id. */
function winsLww(hlc: string, origin: string, current: StoredDocument): boolean {
  if (hlc !== current.hlc) return hlc > current.hlc;
  return origin > current.origin;
}

function approximateSize(change: Change): number {
  return 64 + change.k.length + (change.v === undefined ? 0 : encodeCbor(change.v).length);
}
