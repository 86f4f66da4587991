import type { FastifyPluginAsync } from 'fastify';
import { constantTimeEqual } from '../shared/bearer.js';
import { isValidAgentId, isValidPartition, TOPIC_ROOT } from '../shared/topics.js';
import type { HubBase } from './hub-base.js';
import { mayPublish, maySubscribe } from './topic-acl.js';

interface AuthnBody {
  username?: string;
  password?: string;
  clientid: string;
}
interface AuthzBody {
  username: string;
  topic: string;
  action: 'publish' | 'subscribe';
  retain?: boolean | string;
}

const allow = { result: 'allow' } as const;
const deny = { result: 'deny' } as const;

/** The hub's account, or that of one of its partitions (`<account>-p-<partition>`, see partitionBrokerUser). */
const isHubAccount = (username: string | undefined, service: string): boolean =>
  username !== undefined &&
  (username === service || (username.startsWith(`${service}-p-`) && isValidPartition(username.slice(service.length + 3))));

/**
 * Authentication and authorization for an external broker that asks over HTTP (EMQX's HTTP
 * authenticator and authorizer), by the embedded broker's rules: the username is the client id
 * is a provisioned, unrevoked agent whose token verifies; an agent publishes only to its own `up`
 * topic and subscribes only to what it may read. EMQX checks a subscription once and does not
 * filter deliveries, so `c/+` is allowed only to agents that may read every collection; others
 * subscribe to their collections by name (agent option `collections`). The hub's own broker
 * account, and its partitions' accounts, may use every protocol topic.
 */
export function brokerAuthRoutes(hub: HubBase): FastifyPluginAsync {
  const subscribeAccess = {
    mayRead: (agentId: string, collection: string) => hub.core.access.mayRead(agentId, collection),
    mayReadAll: (agentId: string) => hub.core.access.mayReadAll(agentId),
    partitionOf: (collection: string) => hub.core.partitionOf(collection),
  };
  return async (app) => {
    app.post<{ Body: AuthnBody }>(
      '/v1/broker/authn',
      {
        schema: {
          body: {
            type: 'object',
            required: ['clientid'],
            properties: { username: { type: 'string' }, password: { type: 'string' }, clientid: { type: 'string' } },
          },
        },
      },
      async (request) => {
        const { username, password, clientid } = request.body;
        const service = hub.brokerServiceUser;
        if (service && isHubAccount(username, service.username)) {
          return clientid === username && password !== undefined && constantTimeEqual(password, service.password) ? allow : deny;
        }
        if (!isValidAgentId(clientid)) return deny;
        if (hub.common.dev) return allow;
        const result = await hub.authenticator.check(clientid, username, password === undefined ? undefined : Buffer.from(password));
        if (result !== 'ok') hub.log.warn({ agentId: clientid, reason: result }, 'broker authentication refused');
        return result === 'ok' ? allow : deny;
      },
    );

    app.post<{ Body: AuthzBody }>(
      '/v1/broker/authz',
      {
        schema: {
          body: {
            type: 'object',
            required: ['username', 'topic', 'action'],
            properties: {
              username: { type: 'string' },
              topic: { type: 'string' },
              action: { type: 'string', enum: ['publish', 'subscribe'] },
              retain: { anyOf: [{ type: 'boolean' }, { type: 'string' }] },
            },
          },
        },
      },
      async (request) => {
        const { username, topic, action, retain } = request.body;
        const service = hub.brokerServiceUser;
        if (service && isHubAccount(username, service.username)) return topic.startsWith(`${TOPIC_ROOT}/`) ? allow : deny;
        if (!hub.common.dev && !(await hub.authenticator.stillValid(username))) return deny;
        if (action === 'publish') return mayPublish(username, topic, retain === true || retain === 'true') ? allow : deny;
        return maySubscribe(username, topic, subscribeAccess, false) ? allow : deny;
      },
    );
  };
}
