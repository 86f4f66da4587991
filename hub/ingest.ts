import type { Hlc, HybridClock } from '../shared/hlc.js';
import type { BatchMessage, Change, ChangesMessage, DownMessage, OpResult, WriteOp } from '../shared/messages.js';
import { packAck } from '../shared/acks.js';
import { changeSetsOf, type Sized } from './change-sets.js';
import { digestOf } from './op-digest.js';
import { RunRecorder } from './run-recorder.js';
import {
  checkBlobDocument,
  checkPartition,
  scopeAfter,
  scopeBefore,
  scopeOfReapply,
  validateOp,
  weighedDocument,
  type ScopeView,
} from './op-checks.js';
import { limits as defaultLimits, type Limits } from '../shared/limits.js';
import type { JsonValue } from '../shared/values.js';
import { encodeValue, parseValue } from '../shared/value-bytes.js';
import { planOf, type IngestRequest } from './ingest-requests.js';
import type { CollectionPolicies } from './config.js';
import type { ReplicaWait } from './replication-tracker.js';
import { resolveWrite } from './resolve.js';
import { bucketIdOf } from '../shared/buckets.js';
import type { ChangeBuckets, HeldWhole, HubStore, IngestTx, StoredDocument } from './store/hub-store.js';

export type { BatchRequest, HubWriteRequest, IngestRequest, ReapplyRequest } from './ingest-requests.js';

export type WriteResult = Omit<OpResult, 'seq' | 'dup'>;

export interface IngestOutput {
  replies: Array<{ agentId: string; message: DownMessage }>;
  /**
   * Committed change sets to publish, in commit order: an unscoped collection's to its topic, a
   * scoped one's per bucket (`b`) to the devices holding the bucket.
   */
  changeSets: ChangesMessage[];
  /** One result per hub write (and reapplied write), in request order. */
  hubResults: WriteResult[];
  /** Committed writes whose writers asked to hear when other agents have applied them. */
  replicaWaits: ReplicaWait[];
}

/** The most scope buckets a document may be in: what a change's `bk` carries (shared/messages.ts). */
const MAX_BUCKETS_PER_DOCUMENT = 1024;

export interface IngestOptions {
  /** How far ahead of the hub's clock an op's HLC may be before it is rejected. */
  maxFutureSkewMs: number;
  limits: Limits;
  /** Largest change set published in one message, in approximate bytes. */
  maxChangeSetBytes: number;
  /** Whether an agent may write a collection (access control); hub writes are not asked. */
  mayWrite?: (agentId: string, collection: string) => boolean;
  /**
   * The partition this log is of, and which partition each collection belongs to: a write to
   * another partition's collection is refused (`wrong_partition`), never committed here.
   */
  partition?: { name: string; of: (collection: string) => string };
  /** The scope rules and devices' buckets (hub/scope-rules.ts): a device's writes outside its scope are refused. */
  scopes?: ScopeView;
}

export const defaultIngestOptions: IngestOptions = {
  maxFutureSkewMs: 60_000,
  limits: defaultLimits,
  maxChangeSetBytes: defaultLimits.maxMessageBytes / 2,
};

interface Identity {
  origin: string;
  incarnation: string | null;
  seq: number | null;
}

/**
 * Turns uploaded batches and hub writes into commits. Everything given to one `ingest` call
 * shares one transaction (group commit). For each agent incarnation the sequence check and the
 * advance of `lastSeq` happen in the same transaction as the writes, so an op is applied at most
 * once however often it is delivered, and its outcome is kept to be re-acked.
 */
export class Ingestor {
  /** The group commit under way's answer for blob content (HubStore.ingest); its work runs synchronously. */
  #heldWhole: HeldWhole = () => false;

  constructor(
    private readonly store: HubStore,
    private readonly clock: HybridClock,
    private readonly policies: CollectionPolicies,
    private readonly options: IngestOptions = defaultIngestOptions,
  ) {}

  /** One group commit: everything in `requests`, atomically. */
  ingest(requests: readonly IngestRequest[]): Promise<IngestOutput> {
    return this.store.ingest(
      planOf(requests, (collection) => this.policies.holdsBlobs(collection)),
      (tx, heldWhole) => {
        this.#heldWhole = heldWhole;
        const committed = new Map<string, Sized[]>();
        const output: IngestOutput = { replies: [], changeSets: [], hubResults: [], replicaWaits: [] };
        for (const request of requests) {
          if (request.kind === 'batch') {
            output.replies.push(...this.#ingestBatch(tx, request.agentId, request.batch, committed, output.replicaWaits));
          } else if (request.kind === 'hub') {
            const op = { ...request.write, v: encodedOrAbsent(request.write.v), hlc: this.clock.tick() };
            output.hubResults.push(this.#apply(tx, { origin: 'hub', incarnation: null, seq: null }, op, committed));
          } else {
            const { origin, vouchers, ...write } = request.write;
            const op = { ...write, v: encodedOrAbsent(write.v) };
            output.hubResults.push(this.#apply(tx, { origin, incarnation: null, seq: null }, op, committed, vouchers));
          }
        }
        output.changeSets = changeSetsOf(tx, committed, this.clock, this.options.maxChangeSetBytes);
        return output;
      },
    );
  }

  #ingestBatch(
    tx: IngestTx,
    agentId: string,
    batch: BatchMessage[1],
    committed: Map<string, Sized[]>,
    waits: ReplicaWait[],
  ): IngestOutput['replies'] {
    const { inc } = batch;
    let last = tx.lastSeq(agentId, inc);
    const startLast = last;
    const results: OpResult[] = [];
    let expected: number | undefined;
    let reused: number | undefined;
    const runs = new RunRecorder(tx, agentId, inc);
    for (const op of batch.ops) {
      if (op.seq <= last) {
        const original = tx.outcome(agentId, inc, op.seq);
        if (original?.digest && original.digest !== digestOf(op)) {
          // Same identity, different content: a device restored from an old backup is reusing
          // sequence numbers. Acking it as a duplicate would silently drop the new write.
          reused = op.seq;
          break;
        }
        results.push(original ? { seq: op.seq, ...original.result, dup: true } : { seq: op.seq, outcome: 'duplicate' });
        continue;
      }
      if (op.seq !== last + 1) {
        expected = last + 1;
        break;
      }
      const result: OpResult = { seq: op.seq, ...this.#apply(tx, { origin: agentId, incarnation: inc, seq: op.seq }, op, committed) };
      // Committed ops are remembered as runs (their digests are in the log); others one by one.
      if (result.outcome === 'committed') runs.add(op.seq, result.lsn!);
      else tx.putOutcome(agentId, inc, result, digestOf(op));
      results.push(result);
      if (op.rep !== undefined && result.outcome === 'committed') {
        const bucket = committed.get(op.c)?.at(-1)?.change.bk?.[0];
        waits.push({
          agentId,
          inc,
          seq: op.seq,
          collection: op.c,
          lsn: result.lsn!,
          replicas: op.rep,
          ...(bucket !== undefined && { bucket }),
        });
      }
      last = op.seq;
    }
    runs.flush();
    if (last !== startLast) tx.setLastSeq(agentId, inc, last);
    const hlc = this.clock.tick();
    const replies: IngestOutput['replies'] = [];
    if (results.length > 0) replies.push({ agentId, message: ['ack', packAck(inc, hlc, results)] });
    if (expected !== undefined) replies.push({ agentId, message: ['resync', { inc, hlc, expected }] });
    if (reused !== undefined) replies.push({ agentId, message: ['reincarnate', { inc, hlc, seq: reused }] });
    return replies;
  }

  /** `vouchers`: a reapplied lost version's (ReapplyRequest). */
  #apply(
    tx: IngestTx,
    who: Identity,
    op: Omit<WriteOp, 'seq'>,
    committed: Map<string, Sized[]>,
    vouchers?: readonly string[],
  ): WriteResult {
    if (op.op === 'skip') {
      // The agent gave this write up before uploading it (expired, dropped on overflow) and has
      // told its app; the seq is consumed so the ones behind it follow on.
      const told = op.v === undefined ? undefined : parseValue(op.v);
      const reason =
        told && 'value' in told && typeof told.value === 'string' && /^[a-z_]{1,32}$/.test(told.value) ? told.value : 'skipped';
      return { outcome: 'rejected', reason, detail: 'given up on the device before upload' };
    }
    const checked = validateOp(op, this.options.limits, this.options.maxFutureSkewMs);
    if ('reason' in checked) return { outcome: 'rejected', ...checked };
    const misrouted = checkPartition(op.c, this.options.partition);
    if (misrouted) return { outcome: 'rejected', ...misrouted };
    if (who.seq !== null && this.options.mayWrite && !this.options.mayWrite(who.origin, op.c)) {
      return {
        outcome: 'rejected',
        reason: 'forbidden',
        detail: `agent ${who.origin} may not write collection ${op.c}; grant it in the hub config's access section`,
      };
    }
    const policy = this.policies.get(op.c);
    if (!policy) {
      return {
        outcome: 'rejected',
        reason: 'unknown_collection',
        detail: `collection ${op.c} is not declared at the hub, which refuses undeclared collections`,
      };
    }
    const hlc = op.hlc as Hlc;
    this.clock.observe(hlc);
    if (op.op === 'put') {
      const schemaProblem = policy.check(checked.value);
      if (schemaProblem)
        return { outcome: 'rejected', reason: 'schema', detail: `value does not match the schema of ${op.c}: ${schemaProblem}` };
    }
    if (policy.blobs) {
      const blobProblem = checkBlobDocument(op, checked.value, this.#heldWhole);
      if (blobProblem) return { outcome: 'rejected', ...blobProblem };
    }

    const current = tx.document(op.c, op.k);
    // Before anything is resolved: a device learns nothing of a document outside its scope.
    const agent = who.seq !== null ? who.origin : undefined;
    const outside = agent !== undefined ? scopeBefore(this.options.scopes, agent, op, current) : undefined;
    if (outside) return { outcome: 'rejected', ...outside };
    const unvouched = vouchers && scopeOfReapply(this.options.scopes, { ...op, v: checked.value, origin: who.origin, vouchers }, current);
    if (unvouched) return { outcome: 'rejected', ...unvouched };
    // A hub write without If-Match is unconditional: made against whatever is current.
    const base = op.base ?? (who.seq === null ? (current?.version ?? 0) : 0);
    const incoming = { op: op.op, value: checked.value, hlc, origin: who.origin, base };
    // A tombstone the device could not read weighs as nothing: a conflict would reveal it.
    const weighed = agent !== undefined ? weighedDocument(this.options.scopes, agent, op, current) : current;
    const resolution = resolveWrite(policy.conflict, weighed, incoming);
    const loser = { origin: who.origin, incarnation: who.incarnation, seq: who.seq, op: op.op, value: incoming.value, hlc };
    if (resolution.kind === 'lose') {
      const winner = current!;
      tx.archiveConflict({
        collection: op.c,
        key: op.k,
        policy: policy.conflict,
        reason: resolution.reason,
        detail: resolution.detail,
        loser,
        winner: { lsn: winner.version, origin: winner.origin, hlc: winner.hlc, value: winner.deleted ? undefined : winner.value },
      });
      return { outcome: 'conflict', lsn: winner.version, reason: resolution.reason, detail: resolution.detail };
    }
    const movesOut = agent !== undefined ? scopeAfter(this.options.scopes, agent, op, current, resolution.value) : undefined;
    if (movesOut) return { outcome: 'rejected', ...movesOut };
    if (op.op === 'patch' && resolution.value !== undefined) {
      const schemaProblem = policy.check(resolution.value);
      if (schemaProblem)
        return { outcome: 'rejected', reason: 'schema', detail: `patched value does not match the schema of ${op.c}: ${schemaProblem}` };
    }

    const kind = op.op === 'del' ? 'del' : 'put';
    const buckets = this.#bucketsOf(op.c, op.k, kind, current, resolution.value);
    if (buckets && buckets.in.length > MAX_BUCKETS_PER_DOCUMENT) {
      return {
        outcome: 'rejected',
        reason: 'too_many_buckets',
        detail: `document ${op.k} of ${op.c} would be in ${buckets.in.length} scope buckets, over ${MAX_BUCKETS_PER_DOCUMENT}: split the field it lists`,
      };
    }
    // Most writes commit the value exactly as written: its bytes as the writer encoded them.
    const encoded =
      resolution.value === undefined ? undefined : resolution.value === checked.value ? checked.encoded! : encodeValue(resolution.value);
    const { lsn, bytes, digest, bucketDigests } = tx.commit({
      collection: op.c,
      key: op.k,
      op: kind,
      value: resolution.value,
      hlc,
      origin: who.origin,
      incarnation: who.incarnation,
      seq: who.seq,
      ...(resolution.fieldHlcs && { fieldHlcs: resolution.fieldHlcs }),
      ...(encoded && { encoded }),
      ...(who.seq !== null && { digest: digestOf(op) }),
      ...(buckets && { buckets }),
    });
    const winner = { lsn, origin: who.origin, hlc, value: resolution.value };
    const unseen = weighed !== current && current!.origin !== who.origin; // its deletion is kept on record all the same
    if ((resolution.overwritten || unseen) && current) {
      tx.archiveConflict({
        collection: op.c,
        key: op.k,
        policy: policy.conflict,
        reason: 'overwritten',
        detail: unseen
          ? `a write by a device that could not read deleted version ${current.version} replaced it`
          : `a concurrent write with a later timestamp replaced version ${current.version}`,
        loser: {
          origin: current.origin,
          incarnation: null,
          seq: null,
          op: current.deleted ? 'del' : 'put',
          value: current.deleted ? undefined : current.value,
          hlc: current.hlc,
        },
        winner,
      });
    }
    if (resolution.lostFields) {
      tx.archiveConflict({
        collection: op.c,
        key: op.k,
        policy: policy.conflict,
        reason: 'merge',
        detail: `fields ${Object.keys(resolution.lostFields).join(', ')} lost to later writes`,
        loser: { ...loser, value: resolution.lostFields },
        winner,
      });
    }
    const change: Change = {
      lsn,
      c: op.c,
      k: op.k,
      op: kind,
      ...(encoded && { v: encoded }),
      hlc,
      o: who.origin,
      ...(buckets && { bk: [...buckets.in] }),
    };
    const list = committed.get(op.c);
    const sized: Sized = { change, bytes, digest, ...(buckets && { buckets, bucketDigests }) };
    if (list) list.push(sized);
    else committed.set(op.c, [sized]);
    return { outcome: 'committed', lsn };
  }

  /**
   * A scoped collection's change: the buckets its document is in afterwards (a delete: those it
   * was in, so the devices holding it get the tombstone) and those it left. Undefined otherwise.
   */
  #bucketsOf(
    collection: string,
    key: string,
    kind: 'put' | 'del',
    current: StoredDocument | undefined,
    value: JsonValue | undefined,
  ): ChangeBuckets | undefined {
    const scopes = this.options.scopes;
    if (!scopes?.scoped(collection)) return undefined;
    const before = current?.buckets ?? [];
    if (kind === 'del') {
      const held = current?.buckets ?? scopes.documentBuckets(collection, key, undefined).map(bucketIdOf);
      return { in: held, left: [] };
    }
    const after = scopes.documentBuckets(collection, key, value).map(bucketIdOf);
    return { in: after, left: before.filter((b) => !after.includes(b)) };
  }
}

/** A hub write's value as a writer's bytes: the main site's writes are encoded here, once. */
function encodedOrAbsent(value: unknown): Uint8Array | undefined {
  return value === undefined ? undefined : encodeValue(value as JsonValue);
}
