import type { Logger } from 'pino';
import { constantTimeEqual } from '../shared/bearer.js';
import { isValidAgentId, isValidPartition, TOPIC_ROOT } from '../shared/topics.js';
import type { Authenticator } from './authenticator.js';
import type { BrokerAuthApi, BrokerConnectQuestion, BrokerTopicQuestion } from './http-api.js';
import { mayPublish, maySubscribe, type SubscribeAccess } from './topic-acl.js';

/** The hub's own broker account, which the broker-auth endpoints admit (EMQX asks them about it too). */
export interface BrokerServiceUser {
  username: string;
  password: string;
}

export interface BrokerAuthOptions {
  /** The hub's broker account, when it has one (external broker). */
  service: BrokerServiceUser | undefined;
  /** Development mode: every agent id is admitted, provisioned or not. */
  dev: boolean;
  authenticator: Authenticator;
  /** The access section, and the partition of each collection. */
  access: Required<SubscribeAccess>;
  log: Logger;
}

/** The hub's account, or that of one of its partitions (`<account>-p-<partition>`, see partitionBrokerUser). */
const isHubAccount = (username: string | undefined, service: string): boolean =>
  username !== undefined &&
  (username === service || (username.startsWith(`${service}-p-`) && isValidPartition(username.slice(service.length + 3))));

/**
 * The answers to an external broker that asks over HTTP (EMQX's HTTP authenticator and
 * authorizer), by the embedded broker's rules: the username is the client id is a provisioned,
 * unrevoked agent whose token verifies; an agent publishes only to its own `up` topic and
 * subscribes only to what it may read. EMQX checks a subscription once and does not filter
 * deliveries, so `c/+` is allowed only to agents that may read every collection; others
 * subscribe to their collections by name (agent option `collections`). The hub's own broker
 * account, and its partitions' accounts, may use every protocol topic.
 */
export function brokerAuth({ service, dev, authenticator, access, log }: BrokerAuthOptions): BrokerAuthApi {
  return {
    async mayConnect({ clientId, username, password }: BrokerConnectQuestion): Promise<boolean> {
      if (service && isHubAccount(username, service.username)) {
        return clientId === username && password !== undefined && constantTimeEqual(password, service.password);
      }
      if (!isValidAgentId(clientId)) return false;
      if (dev) return true;
      const result = await authenticator.check(clientId, username, password === undefined ? undefined : Buffer.from(password));
      if (result !== 'ok') log.warn({ agentId: clientId, reason: result }, 'broker authentication refused');
      return result === 'ok';
    },

    async mayUseTopic({ username, topic, action, retain }: BrokerTopicQuestion): Promise<boolean> {
      if (service && isHubAccount(username, service.username)) return topic.startsWith(`${TOPIC_ROOT}/`);
      if (!dev && !(await authenticator.stillValid(username))) return false;
      if (action === 'publish') return mayPublish(username, topic, retain);
      return maySubscribe(username, topic, access, false);
    },
  };
}
