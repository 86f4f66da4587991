import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { hashToken } from '../../hub/credentials.js';
import { BrokerClientHub } from '../../hub/external-broker.js';
import { mosquittoHash, verifyMosquittoHash } from '../../hub/mosquitto-password.js';
import { SqliteHubDb } from '../../hub/store/sqlite-db.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { broadcastCodec, upCodec } from '../../shared/codec.js';
import { encodeHlc } from '../../shared/hlc.js';
import { topics } from '../../shared/topics.js';
import { MOSQUITTO, MosquittoProcess, NO_MOSQUITTO } from '../helpers/mosquitto.js';
import { CLI, OutpostProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';
import { which } from '../helpers/which.js';
import { encodeValue } from '../../shared/value-bytes.js';

const HUB_PASSWORD = 'hub-secret-for-tests';
const outpost = (args: string[], env: Record<string, string> = {}): { stdout: string; stderr: string } => {
  const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  if (run.status !== 0) throw new Error(`outpost ${args.join(' ')} exited with ${run.status}: ${run.stderr}`);
  return { stdout: run.stdout, stderr: run.stderr };
};
const connect = (url: string, id: string, password: string): Promise<mqtt.MqttClient> =>
  mqtt.connectAsync(url, { clientId: id, username: id, password, reconnectPeriod: 0, protocolVersion: 4 });
const batch = (key: string): Buffer =>
  upCodec.encode([
    'batch',
    { inc: 'd'.repeat(32), ops: [{ seq: 1, c: 'docs', k: key, op: 'put', v: encodeValue(1), hlc: encodeHlc(Date.now(), 0) }] },
  ]);

describe('Mosquitto passwords', () => {
  it('are hashed as mosquitto_passwd hashes them ($7$, PBKDF2-SHA512, 101 iterations, 12-byte salt, 64-byte hash)', async () => {
    expect(await mosquittoHash('opt_token')).toMatch(/^\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/);
    const mosquittoPasswd = which('mosquitto_passwd');
    if (!mosquittoPasswd) return; // the real broker below checks our hashes either way
    const file = join(tempDir('mosquitto-passwd'), 'passwords');
    writeFileSync(file, '');
    execFileSync(mosquittoPasswd, ['-b', file, 'pi-1', 'opt_token']);
    const theirs = readFileSync(file, 'utf8').trim().slice('pi-1:'.length);
    expect(theirs).toMatch(/^\$7\$101\$/);
    expect(await verifyMosquittoHash('opt_token', theirs)).toBe(true);
    expect(await verifyMosquittoHash('opt_tokex', theirs)).toBe(false);
  });
});

describe.skipIf(!MOSQUITTO)(
  `the hub on a real Mosquitto, with the files \`outpost hub export mosquitto\` writes${MOSQUITTO ? '' : ` (${NO_MOSQUITTO})`}`,
  () => {
    let broker: MosquittoProcess | undefined;
    let hub: BrokerClientHub | undefined;
    const closers: Array<() => Promise<unknown>> = [];
    afterEach(async () => {
      for (const close of closers.splice(0).reverse()) await close();
      await hub?.stop();
      hub = undefined;
      await broker?.stop();
      broker = undefined;
    });

    /** A provisioned fleet, exported and served by Mosquitto; `pi-old` predates Mosquitto hashes. */
    async function setUp(): Promise<{ data: string; out: string; tokens: Record<string, string>; config: string; exportOutput: string }> {
      const dir = tempDir('mosquitto');
      const data = join(dir, 'hub');
      const out = join(dir, 'mosquitto');
      const config = join(dir, 'hub.yaml');
      writeFileSync(config, 'access:\n  default: { read: ["*"], write: ["*"] }\n  collections:\n    secrets: { read: [pi-1] }\n');
      const tokens: Record<string, string> = {};
      for (const id of ['pi-1', 'pi-2']) tokens[id] = outpost(['hub', 'agents', 'add', id, '--data', data]).stdout.trim();
      const legacy = new SqliteHubStore(data); // as `agents add` stored it before the Mosquitto hash existed
      await legacy.putCredential('pi-old', await hashToken('token-of-pi-old'));
      await legacy.close();
      const exported = outpost(['hub', 'export', 'mosquitto', '--data', data, '--out', out, '--config', config], {
        OUTPOST_BROKER_PASSWORD: HUB_PASSWORD,
      });
      broker = await MosquittoProcess.start(out);
      return { data, out, tokens, config, exportOutput: exported.stderr };
    }

    async function startHub(data: string, config?: string): Promise<BrokerClientHub> {
      const { loadHubConfig } = await import('../../hub/config.js');
      hub = await BrokerClientHub.start({
        dataDir: data,
        ...(config !== undefined && { config: loadHubConfig(config) }),
        broker: { url: broker!.url, password: HUB_PASSWORD },
      });
      return hub;
    }

    it('exports every unrevoked agent with a Mosquitto hash, and names the ones it cannot export', async () => {
      const { out, exportOutput } = await setUp();
      const passwords = readFileSync(join(out, 'passwords'), 'utf8');
      expect(
        passwords
          .split('\n')
          .filter(Boolean)
          .map((l) => l.split(':')[0]),
      ).toEqual(['outpost-hub', 'pi-1', 'pi-2']);
      expect(exportOutput).toMatch(/NOT EXPORTED: pi-old .*outpost hub agents add/);
      const acl = readFileSync(join(out, 'acl'), 'utf8');
      expect(acl).toContain('pattern write outpost/v6/a/%u/up');
      expect(acl).toMatch(/user pi-2\ntopic read outpost\/v6\/hub\ntopic deny outpost\/v6\/c\/secrets\ntopic read outpost\/v6\/c\/#/);
      expect(acl).toMatch(/user pi-1\ntopic read outpost\/v6\/hub\ntopic read outpost\/v6\/c\/#/);
      expect(acl).toContain('# Not in the password file');
    });

    it('refuses a wrong token, an agent without a Mosquitto hash, and the hub account with a wrong password', async () => {
      const { data, tokens } = await setUp();
      await expect(connect(broker!.url, 'pi-1', `${tokens['pi-1']!}x`)).rejects.toThrow(/Not authorized|Bad username or password/i);
      await expect(connect(broker!.url, 'pi-1', tokens['pi-2']!)).rejects.toThrow(/Not authorized|Bad username or password/i);
      await expect(connect(broker!.url, 'pi-old', 'token-of-pi-old')).rejects.toThrow(/Not authorized|Bad username or password/i);
      const ok = await connect(broker!.url, 'pi-1', tokens['pi-1']!);
      await ok.endAsync();
      await expect(BrokerClientHub.start({ dataDir: data, broker: { url: broker!.url, password: 'wrong' } })).rejects.toMatchObject({
        code: 'OUTPOST_BROKER_UNREACHABLE',
      });
    });

    it("never lets an agent publish on another agent's up topic; its own reaches the hub", async () => {
      const { data, tokens, config } = await setUp();
      await startHub(data, config);
      const mallory = await connect(broker!.url, 'pi-1', tokens['pi-1']!);
      closers.push(() => mallory.endAsync(true));
      await mallory.publishAsync(topics.up('pi-2'), batch('forged'), { qos: 1 });
      await mallory.publishAsync(topics.up('pi-1'), batch('own'), { qos: 1 });
      // Mosquitto passes one client's messages on in the order they came, and the hub commits in
      // the order it receives: had the forged batch got through, it would be in by now.
      await waitFor("pi-1's own write committed", () => hub!.store.document('docs', 'own'));
      expect(hub!.store.head).toBe(1);
      expect(await hub!.store.document('docs', 'own')).toMatchObject({ origin: 'pi-1' });
      expect(await hub!.store.document('docs', 'forged')).toBeUndefined();
      // Presence here is what the hub saw: pi-1 sent something just now, pi-2 never did.
      expect((await hub!.fleet()).find((a) => a.agentId === 'pi-1')).toMatchObject({ online: true });
      expect((await hub!.fleet()).find((a) => a.agentId === 'pi-2')).toMatchObject({ online: false });
      expect(hub!.connectedAgents).toBe(1);
    });

    it('keeps a persistent session: what an agent sends while the hub restarts waits for it in Mosquitto', async () => {
      const { data, tokens, config } = await setUp();
      await startHub(data, config);
      await hub!.stop();
      const agent = await connect(broker!.url, 'pi-1', tokens['pi-1']!);
      closers.push(() => agent.endAsync(true));
      await agent.publishAsync(topics.up('pi-1'), batch('sent-while-away'), { qos: 1 }); // sent once, never again
      await startHub(data, config);
      await waitFor('the queued write committed', () => hub!.store.document('docs', 'sent-while-away'));
    });

    it('delivers change sets only of collections the agent may read, though it subscribes to all', async () => {
      const { data, tokens, config } = await setUp();
      await startHub(data, config);
      const received: Record<string, string[]> = { 'pi-1': [], 'pi-2': [] };
      for (const id of ['pi-1', 'pi-2'] as const) {
        const client = await connect(broker!.url, id, tokens[id]!);
        closers.push(() => client.endAsync(true));
        client.on('message', (topic, payload) => {
          const message = broadcastCodec.decode(payload);
          if (message[0] === 'changes') received[id]!.push(message[1].c);
        });
        await client.subscribeAsync(topics.allCollections, { qos: 1 });
      }
      await hub!.core.write({ c: 'secrets', k: 'k', op: 'put', v: 1 });
      await hub!.core.write({ c: 'docs', k: 'k', op: 'put', v: 1 });
      await waitFor('both got docs', () => received['pi-1']!.includes('docs') && received['pi-2']!.includes('docs'));
      expect(received['pi-1']).toEqual(['secrets', 'docs']);
      expect(received['pi-2']).toEqual(['docs']);
    });

    it('agents that stayed connected pull what a hub committed but never published, once a hub starts again', async () => {
      const { data, tokens, config } = await setUp();
      await startHub(data, config);
      const dir = tempDir('mosquitto-unpublished');
      const agent = new Agent({
        hubUrl: broker!.url,
        agentId: 'pi-2',
        hubToken: tokens['pi-2']!,
        dataDir: join(dir, 'pi-2'),
        reconnect: { initialMs: 50, maxMs: 300 },
      }).start();
      closers.push(() => agent.close());
      await hub!.core.write({ c: 'docs', k: 'first', op: 'put', v: 1 });
      await waitFor(
        'the agent caught up',
        () => agent.status().connected && agent.status().watermark >= 1 && agent.status().collections.docs?.appliedLsn === 1,
      );
      await hub!.stop();
      hub = undefined;
      // A commit whose change set never went out: the hub died between committing and publishing.
      const db = new SqliteHubDb(data);
      db.transaction(() => {
        const { lsn } = db.commit({
          collection: 'docs',
          key: 'quiet',
          op: 'put',
          value: 'committed, never published',
          hlc: encodeHlc(Date.now(), 0),
          origin: 'hub',
          incarnation: null,
          seq: null,
        });
        db.setCollectionHead('docs', lsn);
      });
      db.close();
      expect(agent.status().connected, 'the agent stays connected to Mosquitto throughout').toBe(true);
      await startHub(data, config);
      // Nothing else is written to that collection: only the restarted hub's status tells the agent.
      await waitFor('the agent has the unpublished commit', () => agent.get('docs', 'quiet'), 10_000);
    });

    it('a revoked agent is cut off once the files are exported again and Mosquitto reloads (SIGHUP)', async () => {
      const { data, out, tokens, config } = await setUp();
      const live = await connect(broker!.url, 'pi-2', tokens['pi-2']!);
      let closed = false;
      live.on('close', () => (closed = true));
      closers.push(() => live.endAsync(true));
      outpost(['hub', 'agents', 'revoke', 'pi-2', '--data', data]);
      const again = outpost(['hub', 'export', 'mosquitto', '--data', data, '--out', out, '--config', config]);
      expect(again.stderr).toMatch(/Kept the hub account's existing password/);
      expect(again.stdout).toBe(''); // no new password was generated
      await broker!.reload();
      await waitFor('the live connection closed', () => closed, 3_000);
      await expect(connect(broker!.url, 'pi-2', tokens['pi-2']!)).rejects.toThrow(/Not authorized|Bad username or password/i);
      (await connect(broker!.url, 'pi-1', tokens['pi-1']!)).end(true);
      (await connect(broker!.url, 'outpost-hub', HUB_PASSWORD)).end(true); // the hub's kept password still works
    });

    it("`outpost hub --broker` runs the hub as Mosquitto's client: agents sync through it", async () => {
      const { data, tokens, config } = await setUp();
      const hubProcess = new OutpostProcess(['hub', '--broker', broker!.url, '--data', data, '--config', config, '--http', '127.0.0.1:0'], {
        OUTPOST_BROKER_PASSWORD: HUB_PASSWORD,
      });
      closers.push(() => hubProcess.kill('SIGTERM'));
      await hubProcess.waitForLog('hub started');
      const dir = tempDir('mosquitto-agents');
      const open = (id: string): Agent => {
        const agent = new Agent({
          hubUrl: broker!.url,
          agentId: id,
          hubToken: tokens[id]!,
          dataDir: join(dir, id),
          reconnect: { initialMs: 50, maxMs: 300 },
        }).start();
        closers.push(() => agent.close());
        return agent;
      };
      const a = open('pi-1');
      const b = open('pi-2');
      const receipt = await a.put('docs', 'd1', { hello: 'mosquitto' }, { durability: 'hub', timeoutMs: 10_000 });
      expect(receipt.lsn).toBe(1);
      expect(await b.get('docs', 'd1', { minLsn: 1, timeoutMs: 10_000 })).toMatchObject({ value: { hello: 'mosquitto' } });
      // pi-2 may not read `secrets`: the broker never delivers it, and the hub's pages skip it.
      await a.put('secrets', 's1', 1, { durability: 'hub', timeoutMs: 10_000 });
      await a.put('docs', 'd2', 2, { durability: 'hub', timeoutMs: 10_000 });
      await b.get('docs', 'd2', { minLsn: 3, timeoutMs: 10_000 });
      expect(await b.get('secrets', 's1')).toBeUndefined();
    });
  },
);
