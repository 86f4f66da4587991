import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BLOB_CHUNK_BYTES } from '../../shared/blobs.js';
import { FaultProxy } from '../chaos/fault-proxy.js';
import { freePort } from '../helpers/ports.js';
import { OutpostProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A 50 MB blob from a device process to a hub process through a link cut every 2 s, the agent
 * SIGKILLed once and the hub SIGKILLed once on the way.
 */
describe('a large blob through faults', () => {
  const processes: OutpostProcess[] = [];
  let proxy: FaultProxy | undefined;
  let cutter: NodeJS.Timeout | undefined;
  afterEach(async () => {
    clearInterval(cutter);
    await proxy?.close();
    await Promise.all(processes.splice(0).map((p) => p.kill('SIGKILL')));
  });

  it('arrives byte-identical, each chunk stored once, and its document commits only once the whole content is there', async () => {
    const dir = tempDir('blob-faults');
    const config = join(dir, 'hub.yaml');
    writeFileSync(config, 'collections:\n  clips:\n    blobs: lazy\naccess:\n  default:\n    read: ["*"]\n    write: ["*"]\n');
    const [mqttPort, hubHttp, agentHttp] = await Promise.all([freePort(), freePort(), freePort()]);
    const startHub = async (): Promise<OutpostProcess> => {
      const hub = new OutpostProcess([
        'hub',
        '--dev',
        '--port',
        String(mqttPort),
        '--host',
        '127.0.0.1',
        '--http',
        `127.0.0.1:${hubHttp}`,
        '--data',
        join(dir, 'hub'),
        '--config',
        config,
      ]);
      processes.push(hub);
      await hub.waitForLog('hub started');
      return hub;
    };
    proxy = await FaultProxy.start({ host: '127.0.0.1', port: mqttPort });
    const startAgent = async (): Promise<OutpostProcess> => {
      const agent = new OutpostProcess([
        'agent',
        '--hub',
        `mqtt://127.0.0.1:${proxy!.port}`,
        '--id',
        'cam-1',
        '--data',
        join(dir, 'cam-1'),
        '--http',
        `127.0.0.1:${agentHttp}`,
        '--reconnect-max-ms',
        '500',
      ]);
      processes.push(agent);
      await agent.waitForLog('agent started');
      return agent;
    };
    let hub = await startHub();
    let agent = await startAgent();

    const clip = randomBytes(50 * 1024 * 1024);
    const sha256 = createHash('sha256').update(clip).digest('hex');
    const chunks = Math.ceil(clip.length / BLOB_CHUNK_BYTES);
    const put = await fetch(`http://127.0.0.1:${agentHttp}/v1/blobs/clips/big`, {
      method: 'PUT',
      headers: { 'content-type': 'video/mp4' },
      body: clip,
    });
    expect(put.status).toBe(200);
    cutter = setInterval(() => proxy!.reset(), 2_000);

    const content = join(dir, 'hub', 'content');
    const upload = join(content, 'uploads', sha256);
    const object = join(content, 'objects', sha256.slice(0, 2), sha256);
    const stored = (): number =>
      existsSync(object) ? chunks : existsSync(upload) ? readdirSync(upload).filter((n) => /^\d+$/.test(n)).length : 0;
    const document = async (): Promise<unknown> => {
      const response = await fetch(`http://127.0.0.1:${hubHttp}/v1/docs/clips/big`).catch(() => undefined);
      return response?.status === 200 ? ((await response.json()) as { value: unknown }).value : undefined;
    };

    await waitFor('a third of the chunks at the hub', () => stored() >= chunks / 3, 120_000, 50);
    await agent.kill('SIGKILL');
    agent = await startAgent();
    await waitFor('two thirds of the chunks at the hub', () => stored() >= (2 * chunks) / 3, 120_000, 50);
    await hub.kill('SIGKILL');
    hub = await startHub();

    // Watched as it goes: whenever the document is there, the whole content is too.
    const committed = await waitFor(
      'the document at the hub',
      async () => {
        const value = await document();
        if (value !== undefined) expect(existsSync(join(object, 'size')), 'the content held whole when its document is seen').toBe(true);
        return value;
      },
      180_000,
      100,
    );
    expect(committed).toEqual({ sha256, size: clip.length, contentType: 'video/mp4' });
    const files = readdirSync(object).filter((n) => /^\d+$/.test(n));
    expect(files.length, 'each chunk once').toBe(chunks);
    expect(files.reduce((sum, n) => sum + statSync(join(object, n)).size, 0)).toBe(clip.length);
    const back = Buffer.concat(Array.from({ length: chunks }, (_, i) => readFileSync(join(object, String(i)))));
    expect(back.equals(clip), 'byte-identical').toBe(true);
    expect(existsSync(upload), 'nothing left half-uploaded').toBe(false);
  }, 300_000);
});
