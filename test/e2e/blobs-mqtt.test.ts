import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, type AgentOptions } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { Hub } from '../../hub/hub.js';
import { BLOB_CHUNK_BYTES, contentHash } from '../../shared/blobs.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/** Blobs between devices and the hub over MQTT: uploads in chunks that resume, downloads on read or on replication. */
describe('blobs over MQTT', () => {
  let hub: Hub | undefined;
  const agents: Agent[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await hub?.stop();
    hub = undefined;
  });

  const config = parseHubConfig({
    collections: { photos: { blobs: 'lazy' }, firmware: { blobs: 'eager' }, alarms: { priority: 'high' } },
    access: { default: { read: ['*'], write: ['*'] } },
  });

  async function startHub(dir: string, port = 0): Promise<Hub> {
    hub = await Hub.start({ port, host: '127.0.0.1', dev: true, dataDir: join(dir, 'hub'), config });
    return hub;
  }

  function agent(dir: string, id: string, more: Partial<AgentOptions> = {}): Agent {
    const a = new Agent({
      hubUrl: `mqtt://127.0.0.1:${hub!.port}`,
      agentId: id,
      dataDir: join(dir, id),
      ackTimeoutMs: 2_000,
      reconnect: { initialMs: 50, maxMs: 200 },
      ...more,
    }).start();
    agents.push(a);
    return a;
  }

  it("uploads a device's blob, commits its document once the hub holds it whole, and another device reads the same bytes", async () => {
    const dir = tempDir('blobs-mqtt');
    await startHub(dir);
    const camera = agent(dir, 'cam-1');
    const viewer = agent(dir, 'viewer-1');
    const still = randomBytes(3 * BLOB_CHUNK_BYTES + 4321);
    const sha256 = contentHash(still);

    const receipt = await camera.putBlob('photos', 'gate/0001', still, { contentType: 'image/jpeg' });
    expect(receipt).toMatchObject({ sha256, size: still.length, contentType: 'image/jpeg' });
    // Read back on the device at once, before any upload.
    const local = await camera.getBlob('photos', 'gate/0001');
    expect(local?.pending).toBe(true);
    expect((await local!.bytes()).equals(still)).toBe(true);

    const committed = await waitFor('the blob document at the hub', () => hub!.core.store.document('photos', 'gate/0001'), 20_000);
    expect(committed.value).toEqual({ sha256, size: still.length, contentType: 'image/jpeg' });
    const objects = join(dir, 'hub', 'content', 'objects', sha256.slice(0, 2), sha256);
    expect(readdirSync(objects).sort(), 'each chunk stored once').toEqual(['0', '1', '2', '3', 'size']);

    await waitFor('the document at the other device', async () => (await viewer.get('photos', 'gate/0001')) !== undefined);
    const fetched = await viewer.getBlob('photos', 'gate/0001');
    expect(fetched).toMatchObject({ sha256, size: still.length, contentType: 'image/jpeg', pending: false });
    expect((await fetched!.bytes()).equals(still), 'byte-identical').toBe(true);
    expect(await camera.getBlob('photos', 'gate/0001').then((b) => b?.pending)).toBe(false);
  });

  it('gives a blob up, as a rejection, when its collection is not declared to hold blobs', async () => {
    const dir = tempDir('blobs-mqtt');
    await startHub(dir);
    const device = agent(dir, 'pi-1');
    const rejected = new Promise<unknown>((resolve) => device.once('rejection', resolve));
    await device.putBlob('notes', 'n1', randomBytes(1000));
    expect(await rejected).toMatchObject([{ collection: 'notes', key: 'n1', outcome: 'rejected', reason: 'OUTPOST_BLOB_REFUSED' }]);
    expect(device.rejections()[0]).toMatchObject({ collection: 'notes', reason: 'OUTPOST_BLOB_REFUSED' });
    expect(await hub!.core.store.document('notes', 'n1')).toBeUndefined();
  });
});
