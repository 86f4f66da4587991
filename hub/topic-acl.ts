import { byeTopic, DEFAULT_PARTITION, isValidCollection, partitionOfTopic, partitionTopics } from '../shared/topics.js';

/**
 * The topic rules of the protocol, deny by default, in one place for every broker the hub works
 * with: the embedded aedes broker, and the authorization endpoint an external one (EMQX) asks.
 * Every partition has the same set of topics under its own root (shared/topics.ts).
 */

/** What the subscription rules need to know of the access section (and of the partitions). */
export interface SubscribeAccess {
  mayRead: (agentId: string, collection: string) => boolean;
  mayReadAll: (agentId: string) => boolean;
  /** The partition a collection belongs to; a collection is read only on its own partition's topic. Absent: every collection is in the default one. */
  partitionOf?: (collection: string) => string;
}

/**
 * An agent publishes only to its own `up` topic of any partition and its own bye topic (its
 * will), never retained (a retained batch would replay).
 */
export function mayPublish(agentId: string, topic: string, retain: boolean): boolean {
  return !retain && (partitionTopics(partitionOfTopic(topic)).agentOfUp(topic) === agentId || topic === byeTopic(agentId));
}

/** The content hash of a blob topic of any partition, or undefined for any other topic. */
export function hashOfAnyBlobTopic(topic: string): string | undefined {
  return partitionTopics(partitionOfTopic(topic)).hashOfBlob(topic);
}

/** The collection of a change-set topic of any partition, or undefined for any other topic. */
export function collectionOfAnyTopic(topic: string): string | undefined {
  return partitionTopics(partitionOfTopic(topic)).collectionOf(topic);
}

/**
 * Subscriptions, in any partition: the agent's own `down` topic, the hub topic, one collection it
 * may read (on the topic of the partition the collection belongs to, or on the default
 * partition's, where nothing of another partition is published: an agent that has not heard of
 * the partitions yet asks for that one, and a refusal would cut its connection before it could
 * hear of them), or every collection (`+`).
 * The `+` filter is safe only where the broker filters each delivery by collection (the embedded
 * broker does, in `authorizeForward`); a broker that checks only the subscription must say
 * `filtersDeliveries: false`, and then `+` needs read access to every collection.
 */
export function maySubscribe(agentId: string, filter: string, access: SubscribeAccess, filtersDeliveries: boolean): boolean {
  const partition = partitionOfTopic(filter);
  const topics = partitionTopics(partition);
  // Every content's chunks: the hub publishes there only through a broker that forwards each to
  // the devices fetching that content (the embedded one, authorizeForward), never elsewhere.
  if (filter === topics.down(agentId) || filter === topics.hub || filter === topics.allBlobs) return true;
  if (filter === topics.allCollections) return filtersDeliveries || access.mayReadAll(agentId);
  const collection = topics.collectionOf(filter);
  return (
    collection !== undefined &&
    isValidCollection(collection) &&
    access.mayRead(agentId, collection) &&
    (access.partitionOf === undefined || partition === DEFAULT_PARTITION || access.partitionOf(collection) === partition)
  );
}
