import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHubConfig } from '../../hub/config.js';
import { hashToken } from '../../hub/credentials.js';
import { Hub } from '../../hub/hub.js';
import { TOPIC_ROOT, topics } from '../../shared/topics.js';
import { tempDir } from '../helpers/temp.js';

/** The endpoints EMQX's HTTP authenticator and authorizer call, over real HTTP. */
describe('broker authentication and authorization over HTTP (/v1/broker/authn, /v1/broker/authz)', () => {
  let hub: Hub;
  const post = async (path: string, body: unknown, token = 'adm1n'): Promise<{ status: number; body: { result?: string } }> => {
    const response = await fetch(`${hub.httpAddress!}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as { result?: string } };
  };
  const authn = async (body: unknown): Promise<string | undefined> => (await post('/v1/broker/authn', body)).body.result;
  const authz = async (username: string, topic: string, action: string, retain?: boolean): Promise<string | undefined> =>
    (await post('/v1/broker/authz', { username, topic, action, ...(retain !== undefined && { retain }) })).body.result;

  beforeAll(async () => {
    hub = await Hub.start({
      port: 0,
      host: '127.0.0.1',
      dataDir: tempDir('broker-auth'),
      http: { host: '127.0.0.1', port: 0 },
      adminToken: 'adm1n',
      config: parseHubConfig({ access: { default: { read: ['*'], write: ['*'] }, collections: { secrets: { read: ['pi-admin'] } } } }),
    });
    for (const id of ['pi-1', 'pi-admin', 'pi-gone']) await hub.store.putCredential(id, await hashToken(`token-of-${id}`));
    await hub.store.revokeCredential('pi-gone');
  });
  afterAll(async () => hub.stop());

  it('needs the admin token', async () => {
    const response = await post('/v1/broker/authn', { username: 'pi-1', password: 'token-of-pi-1', clientid: 'pi-1' }, 'wrong');
    expect(response.status).toBe(401);
  });

  it('authn allows a provisioned agent with its token as username = client id, and nothing else', async () => {
    expect(await authn({ username: 'pi-1', password: 'token-of-pi-1', clientid: 'pi-1' })).toBe('allow');
    expect(await authn({ username: 'pi-1', password: 'token-of-pi-1', clientid: 'pi-1' })).toBe('allow'); // the cached path
    expect(await authn({ username: 'pi-1', password: 'token-of-pi-1x', clientid: 'pi-1' })).toBe('deny');
    expect(await authn({ username: 'pi-1', password: 'token-of-pi-1', clientid: 'pi-admin' })).toBe('deny');
    expect(await authn({ username: 'pi-gone', password: 'token-of-pi-gone', clientid: 'pi-gone' })).toBe('deny');
    expect(await authn({ username: 'pi-9', password: 'token-of-pi-1', clientid: 'pi-9' })).toBe('deny');
    expect(await authn({ clientid: 'pi-1' })).toBe('deny');
    expect(await authn({ username: 'a/b', password: 'x', clientid: 'a/b' })).toBe('deny');
    expect((await post('/v1/broker/authn', { username: 'pi-1' })).status).toBe(400);
  });

  it('authz: an agent publishes only to its own up topic, never retained', async () => {
    expect(await authz('pi-1', topics.up('pi-1'), 'publish')).toBe('allow');
    expect(await authz('pi-1', topics.up('pi-1'), 'publish', true)).toBe('deny');
    expect(await authz('pi-1', topics.up('pi-admin'), 'publish')).toBe('deny');
    for (const topic of [topics.down('pi-1'), topics.hub, topics.collection('docs'), '$SYS/x']) {
      expect(await authz('pi-1', topic, 'publish'), topic).toBe('deny');
    }
  });

  it('authz: subscriptions follow the access section; `c/+` only for agents that may read every collection', async () => {
    for (const topic of [topics.down('pi-1'), topics.hub, topics.collection('docs')])
      expect(await authz('pi-1', topic, 'subscribe'), topic).toBe('allow');
    for (const topic of [
      topics.down('pi-admin'),
      topics.collection('secrets'),
      topics.allCollections,
      `${TOPIC_ROOT}/#`,
      '#',
      topics.up('pi-1'),
    ]) {
      expect(await authz('pi-1', topic, 'subscribe'), topic).toBe('deny');
    }
    expect(await authz('pi-admin', topics.collection('secrets'), 'subscribe')).toBe('allow');
    expect(await authz('pi-admin', topics.allCollections, 'subscribe')).toBe('allow');
    // A revoked agent is refused everything, even if the broker still holds its connection.
    expect(await authz('pi-gone', topics.down('pi-gone'), 'subscribe')).toBe('deny');
    expect(await authz('pi-gone', topics.up('pi-gone'), 'publish')).toBe('deny');
    expect((await post('/v1/broker/authz', { username: 'pi-1', topic: topics.hub, action: 'read' })).status).toBe(400);
  });
});
