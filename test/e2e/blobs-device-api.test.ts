import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { createAgentHttp, type AgentHttp } from '../../agent/http.js';
import { parseHubConfig } from '../../hub/config.js';
import { Hub } from '../../hub/hub.js';
import { BLOB_CHUNK_BYTES, contentHash } from '../../shared/blobs.js';
import { CLI } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

const run = promisify(execFile);

/** Blobs through the device's HTTP API and `outpost agent blob`: bodies streamed in and out. */
describe('blobs through the device API and the CLI', () => {
  let hub: Hub | undefined;
  const agents: Agent[] = [];
  const servers: AgentHttp[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await hub?.stop();
    hub = undefined;
  });

  async function device(dir: string, id: string): Promise<{ agent: Agent; url: string }> {
    const agent = new Agent({ hubUrl: `mqtt://127.0.0.1:${hub!.port}`, agentId: id, dataDir: join(dir, id) }).start();
    agents.push(agent);
    const http = await createAgentHttp(agent, pino({ level: 'silent' }));
    await http.listen({ host: '127.0.0.1', port: 0 });
    servers.push(http);
    return { agent, url: `http://127.0.0.1:${(http.server.address() as { port: number }).port}` };
  }

  it('streams a PUT into the device, uploads it, and serves it on another device with its hash as the ETag', async () => {
    const dir = tempDir('blobs-api');
    hub = await Hub.start({
      port: 0,
      host: '127.0.0.1',
      dev: true,
      dataDir: join(dir, 'hub'),
      config: parseHubConfig({ collections: { logs: { blobs: 'lazy' } }, access: { default: { read: ['*'], write: ['*'] } } }),
    });
    const camera = await device(dir, 'cam-1');
    const viewer = await device(dir, 'viewer-1');
    const bundle = randomBytes(2 * BLOB_CHUNK_BYTES + 99);
    const sha256 = contentHash(bundle);

    // A body in pieces, as a client streams a file.
    const pieces = [bundle.subarray(0, 100_000), bundle.subarray(100_000, 400_000), bundle.subarray(400_000)];
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = pieces.shift();
        if (next) controller.enqueue(next);
        else controller.close();
      },
    });
    const put = await fetch(`${camera.url}/v1/blobs/logs/2026-12-03`, {
      method: 'PUT',
      headers: { 'content-type': 'application/gzip' },
      body,
      duplex: 'half',
    } as RequestInit);
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({ sha256, size: bundle.length, contentType: 'application/gzip' });

    await waitFor('the document on the viewer', async () => (await viewer.agent.get('logs', '2026-12-03')) !== undefined, 20_000);
    const got = await fetch(`${viewer.url}/v1/blobs/logs/2026-12-03`);
    expect(got.status).toBe(200);
    expect(got.headers.get('etag')).toBe(`"${sha256}"`);
    expect(got.headers.get('content-type')).toBe('application/gzip');
    expect(Buffer.from(await got.arrayBuffer()).equals(bundle)).toBe(true);
    expect((await fetch(`${viewer.url}/v1/blobs/logs/2026-12-03`, { headers: { 'if-none-match': `"${sha256}"` } })).status).toBe(304);
    const missing = await fetch(`${viewer.url}/v1/blobs/logs/none`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 'OUTPOST_NOT_FOUND' });

    // The CLI: put a file through one device, wait for the hub, get it through the other.
    const file = join(dir, 'still.jpg');
    const still = randomBytes(BLOB_CHUNK_BYTES + 5);
    writeFileSync(file, still);
    const cli = (url: string, ...args: string[]) =>
      run(process.execPath, [CLI, 'agent', 'blob', ...args, '--url', url], { encoding: 'utf8' });
    const stored = await cli(camera.url, 'put', 'logs', 'still', file, '--content-type', 'image/jpeg', '--wait');
    expect(stored.stdout).toContain(`sha256 ${contentHash(still)}, held by the hub`);
    await waitFor('the still on the viewer', async () => (await viewer.agent.get('logs', 'still')) !== undefined, 20_000);
    const out = join(dir, 'copy.jpg');
    await cli(viewer.url, 'get', 'logs', 'still', '--out', out);
    expect(readFileSync(out).equals(still)).toBe(true);
    const listed = await cli(viewer.url, 'ls', 'logs');
    expect(listed.stdout).toMatch(/^still\s+262149\s+image\/jpeg\s+[0-9a-f]{16}$/m);
  });
});
