import { execFileSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { hashToken } from '../../hub/credentials.js';
import { Hub } from '../../hub/hub.js';
import { makePki, type TestPki } from '../helpers/certs.js';
import { tempDir } from '../helpers/temp.js';

const hasOpenssl = ((): boolean => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!hasOpenssl)('TLS and mutual TLS (certificates made by openssl in the test; skipped without openssl)', () => {
  let hub: Hub | undefined;
  const agents: Agent[] = [];
  let pki: TestPki;
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await hub?.stop();
  });

  const grants = parseHubConfig({ access: { default: { read: ['*'], write: ['*'] } } });

  it('serves agents over TLS only, with a token, verifying the hub certificate', async () => {
    pki = makePki();
    const dir = tempDir('tls');
    hub = await Hub.start({
      port: 0,
      plain: false,
      host: '127.0.0.1',
      dataDir: join(dir, 'hub'),
      config: grants,
      tls: { port: 0, cert: pki.serverCert, key: pki.serverKey },
    });
    await hub.store.putCredential('pi-1', await hashToken('tok'));
    const agent = new Agent({
      hubUrl: `mqtts://127.0.0.1:${hub.tlsPort}`,
      agentId: 'pi-1',
      hubToken: 'tok',
      dataDir: join(dir, 'pi-1'),
      tls: { ca: pki.ca },
    }).start();
    agents.push(agent);
    expect((await agent.put('notes', 'n', 1, { durability: 'hub' })).lsn).toBe(1);
    // A client that does not trust the hub's CA does not get in.
    await expect(
      mqtt.connectAsync(`mqtts://127.0.0.1:${hub.tlsPort}`, {
        clientId: 'pi-1',
        username: 'pi-1',
        password: 'tok',
        reconnectPeriod: 0,
        rejectUnauthorized: true,
      }),
    ).rejects.toThrow(/self[- ]signed|unable to verify|certificate/i);
  });

  it('with mutual TLS, the client certificate names the agent: no token, and no borrowing another id', async () => {
    pki = makePki();
    const dir = tempDir('mtls');
    hub = await Hub.start({
      port: 0,
      plain: false,
      host: '127.0.0.1',
      dataDir: join(dir, 'hub'),
      config: grants,
      tls: { port: 0, cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requireClientCert: true },
    });
    for (const id of ['pi-1', 'pi-2']) await hub.store.putCredential(id, await hashToken(`unused-${id}`));
    const url = `mqtts://127.0.0.1:${hub.tlsPort}`;
    const pi1 = pki.client('pi-1');
    const agent = new Agent({ hubUrl: url, agentId: 'pi-1', dataDir: join(dir, 'pi-1'), tls: { ca: pki.ca, ...pi1 } }).start();
    agents.push(agent);
    expect((await agent.put('notes', 'n', 1, { durability: 'hub' })).lsn).toBe(1);

    await expect(mqtt.connectAsync(url, { clientId: 'pi-2', ca: pki.ca, ...pi1, reconnectPeriod: 0 })).rejects.toThrow(/Not authorized/i);
    await expect(mqtt.connectAsync(url, { clientId: 'pi-2', ca: pki.ca, reconnectPeriod: 0, connectTimeout: 3000 })).rejects.toThrow();
    await hub.store.revokeCredential('pi-1');
    await expect(mqtt.connectAsync(url, { clientId: 'pi-1', ca: pki.ca, ...pi1, reconnectPeriod: 0 })).rejects.toThrow(/Not authorized/i);
  });

  it('closes a TLS handshake that never finishes within 10 s and a failed one at once, freeing their places; a stop does not wait for either', async () => {
    pki = makePki();
    const dir = tempDir('tls-silent');
    hub = await Hub.start({
      port: 0,
      host: '127.0.0.1',
      dataDir: join(dir, 'hub'),
      config: grants,
      tls: { port: 0, cert: pki.serverCert, key: pki.serverKey },
      maxPendingLogins: 4,
      maxPendingLoginsPerAddress: 4,
    });
    await hub.store.putCredential('pi-1', await hashToken('tok'));
    const open = (port: number, data?: Buffer): Promise<Socket> =>
      new Promise((resolve) => {
        const socket = connect(port, '127.0.0.1', () => {
          if (data) socket.write(data);
          resolve(socket);
        });
        socket.on('error', () => undefined);
      });
    const closed = (s: Socket): Promise<unknown> => new Promise((resolve) => (s.closed ? resolve(true) : s.once('close', resolve)));
    // Garbage instead of a ClientHello: closed at once.
    const garbage = await open(hub.tlsPort!, Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await closed(garbage);
    // Four silent connections hold every place; Node only reports a handshake timeout, the hub must close them.
    const silent = await Promise.all([1, 2, 3, 4].map(() => open(hub!.tlsPort!)));
    const started = Date.now();
    await Promise.all(silent.map(closed));
    expect(Date.now() - started, 'ms until the silent handshakes were closed').toBeLessThan(12_000);
    const device = await mqtt.connectAsync(`mqtts://127.0.0.1:${hub.tlsPort}`, {
      clientId: 'pi-1',
      username: 'pi-1',
      password: 'tok',
      reconnectPeriod: 0,
      ca: pki.ca,
      rejectUnauthorized: true,
      servername: 'localhost',
    });
    await device.endAsync();
    // A stop closes connections still waiting to log in (plain and TLS) rather than wait for them.
    const waiting = [await open(hub.port), await open(hub.tlsPort!)];
    const stopping = Date.now();
    await hub.stop();
    hub = undefined;
    expect(Date.now() - stopping, 'ms to stop').toBeLessThan(3_000);
    await Promise.all(waiting.map(closed));
  }, 30_000);
});
