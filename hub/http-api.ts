import type { BlobDescriptor } from '../shared/blobs.js';
import type { CollectionPolicies } from './config.js';
import type { AgentView } from './fleet.js';
import type { Sample } from './history.js';
import type { HubWriteRequest, WriteResult } from './ingest.js';
import type { ReapplySummary } from './reapply.js';
import type { ConflictRecord, Lineage, ListedDocument, LostDocument, Rejected, StoredDocument } from './store/hub-store.js';

/**
 * What the hub's HTTP API asks of the hub process behind it: the operations its routes need, and
 * nothing of how the hub is built. The hub implements it (hub/hub-api.ts); the HTTP modules
 * depend on this file alone, so they can be read and changed apart from the hub.
 *
 * Reads and writes of one collection go to the hub of the partition the collection belongs to,
 * when this process leads it; otherwise they throw WrongPartitionError (shared/errors.ts).
 */
export interface HubApi extends BrokerAuthApi {
  /** The hub serving this API listens for agents, with its store open. */
  readonly ready: boolean;
  /** Prometheus exposition of the hub's metrics. */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** Throughput and lag over time, oldest first (the dashboard's charts). */
  history(): readonly Sample[];
  /** Every agent the hub knows of, with its replication status. */
  fleet(): Promise<AgentView[]>;
  /** The collections' policies, as agents receive them. */
  collections(): ReturnType<CollectionPolicies['describe']>;
  /** One document as the hub has it; undefined when there is none, or it is deleted. */
  document(collection: string, key: string): Promise<StoredDocument | undefined>;
  listDocuments(collection: string, options: { prefix?: string; after?: string; limit: number }): Promise<ListedDocument[]>;
  /** Commits a write made at the main site; it reaches the agents like any other. */
  write(write: HubWriteRequest['write']): Promise<WriteResult>;
  /**
   * Stores streamed content and, once the store holds it whole and checked, commits the blob's
   * document (its hash, size and content type), which reaches the agents like any other.
   */
  putBlob(collection: string, key: string, body: AsyncIterable<Uint8Array>, contentType: string): Promise<BlobWriteResult>;
  /** A blob's document and its content, a chunk at a time; NotFoundError if the document is not a blob's. */
  blob(collection: string, key: string): Promise<{ blob: BlobDescriptor; chunks: AsyncIterable<Buffer> }>;
  /** Archived conflicts, newest first: of one collection (its partition's), or else of this API's own partition. */
  conflicts(query: { collection?: string; key?: string; before?: number; limit: number }): Promise<ConflictRecord[]>;
  /** Agents' ops refused, newest first (this API's own partition). */
  rejections(limit: number): Promise<Rejected[]>;
  status(): Promise<HubStatusView>;
  /** Versions agents reported that restores of the database lost, of every partition this process leads. */
  lost(query: { pending?: boolean; limit: number }): Promise<LostView>;
  /** Commits them again (hub/reapply.ts) in every partition this process leads: what became of them, per partition. */
  reapplyLost(options: { unvouched: boolean }): Promise<Record<string, ReapplySummary>>;
}

/** What storing a blob came to: its document's write, and the blob as the document names it. */
export type BlobWriteResult = WriteResult & { blob: BlobDescriptor };

/** `/v1/restore/lost`: each partition's lineage, and the lost versions reported, oldest report first. */
export interface LostView {
  lineages: Record<string, Lineage>;
  lost: Array<LostDocument & { partition: string }>;
}

/** `/v1/status`: this API's own partition first, then each partition this process leads. */
export interface HubStatusView {
  /** This API's own partition (the first one the process serves). */
  partition: string;
  epoch?: number;
  head: number;
  prunedThrough: number;
  connectedAgents: number;
  /** Head LSN of every collection, in whichever partition it is: an agent has caught up when it has applied these. */
  collections: Record<string, number>;
  partitions: PartitionStatusView[];
}

/** One partition this process leads; LSNs count per partition. */
export interface PartitionStatusView {
  partition: string;
  epoch?: number;
  head: number;
  ready: boolean;
  collections: Record<string, number>;
}

/**
 * What an external broker that authenticates over HTTP (EMQX) asks: may this client connect, and
 * may this user publish or subscribe to this topic. The answers follow the embedded broker's rules.
 */
export interface BrokerAuthApi {
  mayConnect(question: BrokerConnectQuestion): Promise<boolean>;
  mayUseTopic(question: BrokerTopicQuestion): Promise<boolean>;
}

export interface BrokerConnectQuestion {
  clientId: string;
  username: string | undefined;
  password: string | undefined;
}

export interface BrokerTopicQuestion {
  username: string;
  topic: string;
  action: 'publish' | 'subscribe';
  /** A publish that asks the broker to retain it. */
  retain: boolean;
}
