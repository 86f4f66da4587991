import { agentOfUpTopic, collectionOfTopic, isValidCollection, topics } from '../shared/topics.js';

/**
 * The topic rules of the protocol, deny by default, in one place for every broker the hub works
 * with: the embedded aedes broker, and the authorization endpoint an external one (EMQX) asks.
 */

/** An agent publishes only to its own `up` topic, never retained (a retained batch would replay). */
export function mayPublish(agentId: string, topic: string, retain: boolean): boolean {
  return !retain && agentOfUpTopic(topic) === agentId;
}

/**
 * Subscriptions: the agent's own `down` topic, the hub topic, one collection it may read, or
 * every collection (`+`). The `+` filter is safe only where the broker filters each delivery by
 * collection (the embedded broker does, in `authorizeForward`); a broker that checks only the
 * subscription must say `filtersDeliveries: false`, and then `+` needs read access to every
 * collection.
 */
export function maySubscribe(
  agentId: string,
  filter: string,
  access: { mayRead: (agentId: string, collection: string) => boolean; mayReadAll: (agentId: string) => boolean },
  filtersDeliveries: boolean,
): boolean {
  if (filter === topics.down(agentId) || filter === topics.hub) return true;
  if (filter === topics.allCollections) return filtersDeliveries || access.mayReadAll(agentId);
  const collection = collectionOfTopic(filter);
  return collection !== undefined && isValidCollection(collection) && access.mayRead(agentId, collection);
}
