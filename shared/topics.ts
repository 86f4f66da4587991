import { AGENT_ID_PATTERN, COLLECTION_PATTERN } from './limits.js';
import { PROTOCOL_VERSION } from './protocol-version.js';

/**
 * The topics of the protocol (MQTT 3.1.1), one set per partition:
 * - `up`:   agent → hub, one per agent (batch, pull, status)
 * - `down`: hub → one agent (ack, resync, page, snapshot, replicated, reincarnate, error)
 * - `collection`: hub → subscribers, committed change sets of one collection
 * - `hub`:  retained hub status
 * - `blobs/<hash>`: hub → the devices fetching content `hash` (fanned out where the broker filters
 *   each delivery: the embedded one)
 *
 * A partition is an independent log with its own leading hub process and its own sequence
 * spaces (see docs/SCALING.md). The default partition holds every collection not assigned to
 * another one and keeps the topics under the root; partition `p` has the same set under
 * `<root>/p/<p>`.
 */
export const TOPIC_ROOT = `outpost/v${PROTOCOL_VERSION}`;

/** The partition of every collection that is not assigned to another. */
export const DEFAULT_PARTITION = 'default';

export interface PartitionTopics {
  readonly partition: string;
  /** Everything of this partition lives under this prefix (the root for the default partition). */
  readonly root: string;
  up(agentId: string): string;
  down(agentId: string): string;
  collection(collection: string): string;
  /** Subscription filter for every collection of the partition. */
  readonly allCollections: string;
  /** Subscription filter for every agent's up topic (the hub's). */
  readonly allUp: string;
  readonly hub: string;
  /** Chunks of content `hash`, published once for every device fetching it. */
  blob(hash: string): string;
  /** Subscription filter for every content's chunks (the broker forwards each to the devices fetching it). */
  readonly allBlobs: string;
  /** The content hash of a blob topic of this partition, or undefined for any other topic. */
  hashOfBlob(topic: string): string | undefined;
  /** The agent id of an `up` topic of this partition, or undefined for any other topic. */
  agentOfUp(topic: string): string | undefined;
  /** The collection of a change-set topic of this partition, or undefined for any other topic. */
  collectionOf(topic: string): string | undefined;
}

const cache = new Map<string, PartitionTopics>();

/** The topics of one partition. */
export function partitionTopics(partition: string): PartitionTopics {
  let set = cache.get(partition);
  if (set) return set;
  const root = partition === DEFAULT_PARTITION ? TOPIC_ROOT : `${TOPIC_ROOT}/p/${partition}`;
  const upPattern = new RegExp(`^${root}/a/([^/]+)/up$`);
  const collectionPattern = new RegExp(`^${root}/c/([^/]+)$`);
  const blobPattern = new RegExp(`^${root}/blobs/([0-9a-f]{64})$`);
  set = {
    partition,
    root,
    up: (agentId) => `${root}/a/${agentId}/up`,
    down: (agentId) => `${root}/a/${agentId}/down`,
    collection: (collection) => `${root}/c/${collection}`,
    allCollections: `${root}/c/+`,
    allUp: `${root}/a/+/up`,
    hub: `${root}/hub`,
    blob: (hash) => `${root}/blobs/${hash}`,
    allBlobs: `${root}/blobs/+`,
    hashOfBlob: (topic) => blobPattern.exec(topic)?.[1],
    agentOfUp: (topic) => upPattern.exec(topic)?.[1],
    collectionOf: (topic) => collectionPattern.exec(topic)?.[1],
  };
  cache.set(partition, set);
  return set;
}

/** The default partition's topics: all there is in a deployment without partitions. */
export const topics = partitionTopics(DEFAULT_PARTITION);

/**
 * Where an agent's MQTT will (`bye`) goes: outside every partition, since a connection has one
 * will and every partition's hub must hear that the device is gone.
 */
export function byeTopic(agentId: string): string {
  return `${TOPIC_ROOT}/a/${agentId}/bye`;
}

/** Subscription filter for every agent's bye topic (every partition's hub subscribes). */
export const ALL_BYE = `${TOPIC_ROOT}/a/+/bye`;

const BYE_PATTERN = new RegExp(`^${TOPIC_ROOT}/a/([^/]+)/bye$`);

/** The agent id of a bye topic, or undefined for any other topic. */
export function agentOfBye(topic: string): string | undefined {
  return BYE_PATTERN.exec(topic)?.[1];
}

/** The agent id of a default-partition `up` topic, or undefined for any other topic. */
export function agentOfUpTopic(topic: string): string | undefined {
  return topics.agentOfUp(topic);
}

const PARTITION_TOPIC = new RegExp(`^${TOPIC_ROOT}/p/([a-z0-9_-]{1,64})/`);

/** The partition a topic belongs to (the default one for topics under the root itself). */
export function partitionOfTopic(topic: string): string {
  return PARTITION_TOPIC.exec(topic)?.[1] ?? DEFAULT_PARTITION;
}

export function isValidAgentId(id: string): boolean {
  return AGENT_ID_PATTERN.test(id);
}

export function isValidCollection(name: string): boolean {
  return COLLECTION_PATTERN.test(name);
}

/** Partition names follow collection names' rules (they are topic levels). */
export function isValidPartition(name: string): boolean {
  return COLLECTION_PATTERN.test(name);
}
