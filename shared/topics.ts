import { AGENT_ID_PATTERN, COLLECTION_PATTERN } from './limits.js';
import { PROTOCOL_VERSION } from './protocol-version.js';

/**
 * The four topics of the protocol (MQTT 3.1.1):
 * - `up`:   agent → hub, one per agent (batch, pull)
 * - `down`: hub → one agent (ack, resync, page, error)
 * - `collection`: hub → subscribers, committed change sets of one collection
 * - `hub`:  retained hub status
 */
export const TOPIC_ROOT = `outpost/v${PROTOCOL_VERSION}`;

export const topics = {
  up: (agentId: string): string => `${TOPIC_ROOT}/a/${agentId}/up`,
  down: (agentId: string): string => `${TOPIC_ROOT}/a/${agentId}/down`,
  collection: (collection: string): string => `${TOPIC_ROOT}/c/${collection}`,
  /** Subscription filter for every collection. */
  allCollections: `${TOPIC_ROOT}/c/+`,
  hub: `${TOPIC_ROOT}/hub`,
} as const;

const UP = new RegExp(`^${TOPIC_ROOT}/a/([^/]+)/up$`);
const COLLECTION = new RegExp(`^${TOPIC_ROOT}/c/([^/]+)$`);

/** The agent id of an `up` topic, or undefined for any other topic. */
export function agentOfUpTopic(topic: string): string | undefined {
  return UP.exec(topic)?.[1];
}

/** The collection of a change-set topic, or undefined for any other topic. */
export function collectionOfTopic(topic: string): string | undefined {
  return COLLECTION.exec(topic)?.[1];
}

export function isValidAgentId(id: string): boolean {
  return AGENT_ID_PATTERN.test(id);
}

export function isValidCollection(name: string): boolean {
  return COLLECTION_PATTERN.test(name);
}
