import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { Hub } from '../../hub/hub.js';
import { BLOB_CHUNK_BYTES, contentHash } from '../../shared/blobs.js';
import { freePort } from '../helpers/ports.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/** A device's card that rots under blob content: what it reads is checked, and what it sends. */
describe('blob content a device storage damaged', () => {
  let hub: Hub | undefined;
  const agents: Agent[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await hub?.stop();
    hub = undefined;
  });

  const config = parseHubConfig({ collections: { photos: { blobs: 'lazy' } }, access: { default: { read: ['*'], write: ['*'] } } });
  const startHub = async (dir: string, port = 0): Promise<Hub> =>
    (hub = await Hub.start({ port, host: '127.0.0.1', dev: true, dataDir: join(dir, 'hub'), config }));
  const agent = (dir: string, id: string, port: number): Agent => {
    const a = new Agent({
      hubUrl: `mqtt://127.0.0.1:${port}`,
      agentId: id,
      dataDir: join(dir, id),
      ackTimeoutMs: 2_000,
      reconnect: { initialMs: 50, maxMs: 200 },
    }).start();
    agents.push(a);
    return a;
  };
  /** Flips one byte of chunk `index` of content held by device `id`, as a failing card does. */
  const rot = (dir: string, id: string, sha256: string, index: number): void => {
    const file = join(dir, id, 'content', 'objects', sha256.slice(0, 2), sha256, String(index));
    const bytes = readFileSync(file);
    bytes[100] = bytes[100]! ^ 0xff;
    writeFileSync(file, bytes);
  };

  it('fails the read of damaged cached content, never returning its bytes, drops it, and the next read fetches it again', async () => {
    const dir = tempDir('blobs-rot');
    const { port } = await startHub(dir);
    const camera = agent(dir, 'cam-1', port);
    const viewer = agent(dir, 'viewer-1', port);
    const still = randomBytes(2 * BLOB_CHUNK_BYTES + 10);
    const sha256 = contentHash(still);
    await camera.putBlob('photos', 'p1', still, { contentType: 'image/jpeg' });
    await waitFor('the photo at the viewer', async () => (await viewer.get('photos', 'p1')) !== undefined, 20_000);
    expect((await (await viewer.getBlob('photos', 'p1'))!.bytes()).equals(still)).toBe(true);

    rot(dir, 'viewer-1', sha256, 1);
    await expect((await viewer.getBlob('photos', 'p1'))!.bytes()).rejects.toMatchObject({ code: 'OUTPOST_BLOB_MISMATCH' });
    const again = await viewer.getBlob('photos', 'p1');
    expect((await again!.bytes()).equals(still), 'fetched from the hub again, whole').toBe(true);
    // A chunk's file lost outright: the same.
    rmSync(join(dir, 'viewer-1', 'content', 'objects', sha256.slice(0, 2), sha256, '0'));
    await expect((await viewer.getBlob('photos', 'p1'))!.bytes()).rejects.toMatchObject({ code: 'OUTPOST_BLOB_MISMATCH' });
    expect((await (await viewer.getBlob('photos', 'p1'))!.bytes()).equals(still)).toBe(true);
  });

  it('gives up a blob written here whose content rotted before the hub held it, as a rejection, instead of sending it forever', async () => {
    const dir = tempDir('blobs-rot');
    const port = await freePort(); // no hub yet: the camera is offline while its card rots
    const camera = agent(dir, 'cam-1', port);
    const still = randomBytes(BLOB_CHUNK_BYTES + 10);
    const sha256 = contentHash(still);
    await camera.putBlob('photos', 'p1', still, { contentType: 'image/jpeg' });
    rot(dir, 'cam-1', sha256, 0);
    await expect((await camera.getBlob('photos', 'p1'))!.bytes()).rejects.toMatchObject({
      code: 'OUTPOST_BLOB_MISMATCH',
      message: expect.stringContaining('write it again') as unknown,
    });
    const rejected = new Promise<unknown>((resolve) => camera.once('rejection', resolve));
    await startHub(dir, port);
    expect(await rejected).toMatchObject([{ collection: 'photos', key: 'p1', outcome: 'rejected', reason: 'OUTPOST_BLOB_MISMATCH' }]);
    expect(await hub!.core.store.document('photos', 'p1')).toBeUndefined();
    expect(await hub!.core.store.content.info(sha256)).toBeUndefined();
    expect(camera.status().blobs?.uploads.blobs).toBe(0);
  });
});
