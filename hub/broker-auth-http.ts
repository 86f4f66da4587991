import type { FastifyPluginAsync } from 'fastify';
import type { BrokerAuthApi } from './http-api.js';

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

/**
 * The endpoints an external broker asks over HTTP (EMQX's HTTP authenticator and authorizer):
 * its request and answer shapes. The decisions are the hub's (BrokerAuthApi, hub/broker-auth.ts).
 */
export function brokerAuthRoutes(auth: BrokerAuthApi): FastifyPluginAsync {
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
        return (await auth.mayConnect({ clientId: clientid, username, password })) ? allow : deny;
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
        // A broker's request template may send the flag as a string.
        return (await auth.mayUseTopic({ username, topic, action, retain: retain === true || retain === 'true' })) ? allow : deny;
      },
    );
  };
}
