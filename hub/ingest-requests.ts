import { blobOf } from '../shared/blobs.js';
import { decodeValue } from '../shared/value-bytes.js';
import type { JsonValue } from '../shared/values.js';
import type { BatchMessage } from '../shared/messages.js';
import type { Hlc } from '../shared/hlc.js';
import type { IngestPlan } from './store/hub-store.js';

/** A batch uploaded by an agent; `agentId` comes from the authenticated connection. */
export interface BatchRequest {
  kind: 'batch';
  agentId: string;
  batch: BatchMessage[1];
}

/** A write made at the main site itself (hub HTTP API). */
export interface HubWriteRequest {
  kind: 'hub';
  write: { c: string; k: string; op: 'put' | 'patch' | 'del'; v?: unknown; base?: number };
}

/**
 * A write committed again after a restore lost it (`outpost hub restore reapply`): it keeps the
 * origin and timestamp it was first made with, so the collection's conflict policy weighs it
 * against what was written since the restore as it would have then. `base` is where the
 * restored history parted from the lost one: a version above it was written since.
 */
export interface ReapplyRequest {
  kind: 'reapply';
  write: {
    c: string;
    k: string;
    op: 'put' | 'del';
    v?: unknown;
    hlc: Hlc;
    origin: string;
    base: number;
    /** The devices whose reports vouch for it: in a scoped collection, it commits only within their scopes now. */
    vouchers: readonly string[];
  };
}

export type IngestRequest = BatchRequest | HubWriteRequest | ReapplyRequest;

/**
 * What a group commit will touch: the uploading incarnations with their seqs, every document
 * written, and the blob content that puts to collections holding blobs name.
 */
export function planOf(requests: readonly IngestRequest[], holdsBlobs: (collection: string) => boolean): IngestPlan {
  const agents: IngestPlan['agents'] = [];
  const documents: IngestPlan['documents'] = [];
  const contents: NonNullable<IngestPlan['contents']> = [];
  const named = (collection: string, op: string, value: () => unknown): void => {
    if (op !== 'put' || !holdsBlobs(collection)) return;
    const blob = blobOf(value());
    if (blob) contents.push([blob.sha256, blob.size]);
  };
  for (const request of requests) {
    if (request.kind === 'batch') {
      agents.push({ agentId: request.agentId, incarnation: request.batch.inc, seqs: request.batch.ops.map((op) => op.seq) });
      for (const op of request.batch.ops) {
        documents.push([op.c, op.k]);
        named(op.c, op.op, () => (op.v === undefined ? undefined : decodedOrAbsent(op.v)));
      }
    } else {
      documents.push([request.write.c, request.write.k]);
      named(request.write.c, request.write.op, () => request.write.v);
    }
  }
  return { agents, documents, contents };
}

/** A device's value bytes decoded, or undefined if they are not CBOR (the op is refused later, as malformed). */
function decodedOrAbsent(bytes: Uint8Array): JsonValue | undefined {
  try {
    return decodeValue(bytes);
  } catch {
    return undefined;
  }
}
