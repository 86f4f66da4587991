import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, type AgentOptions } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { Hub } from '../../hub/hub.js';
import { BLOB_CHUNK_BYTES, contentHash } from '../../shared/blobs.js';
import { freePort } from '../helpers/ports.js';
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

  async function startHub(dir: string, port = 0, maxInboundBytesPerSecond?: number): Promise<Hub> {
    hub = await Hub.start({
      port,
      host: '127.0.0.1',
      dev: true,
      dataDir: join(dir, 'hub'),
      config,
      ...(maxInboundBytesPerSecond !== undefined && { maxInboundBytesPerSecond }),
    });
    return hub;
  }

  /** Chunks of `sha256` the hub has stored so far (complete content counts whole). */
  function chunksAtHub(dir: string, sha256: string, count: number): number {
    if (existsSync(join(dir, 'hub', 'content', 'objects', sha256.slice(0, 2), sha256))) return count;
    const upload = join(dir, 'hub', 'content', 'uploads', sha256);
    return existsSync(upload) ? readdirSync(upload).filter((name) => /^\d+$/.test(name)).length : 0;
  }

  function agent(dir: string, id: string, more: Partial<AgentOptions> = {}): Agent {
    const a = new Agent({
      hubUrl: `mqtt://127.0.0.1:${hub?.port}`, // `more` names another while no hub runs yet
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
    // The document reads as written too (as a pending write), though it has not joined the outbox yet.
    expect(await camera.get('photos', 'gate/0001')).toMatchObject({
      value: { sha256, size: still.length, contentType: 'image/jpeg' },
      pending: true,
    });
    expect(await camera.get('photos', 'gate/0001', { confirmed: true })).toBeUndefined();
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

  it('lists blobs written offline among the documents, as pending writes, in key order and within the page asked for', async () => {
    const dir = tempDir('blobs-mqtt');
    const port = await freePort(); // no hub there yet: the camera is offline
    const camera = agent(dir, 'cam-1', { hubUrl: `mqtt://127.0.0.1:${port}` });
    const [a, c] = [randomBytes(100), randomBytes(200)];
    await camera.putBlob('photos', 'gate/a', a, { contentType: 'image/jpeg' });
    await camera.put('photos', 'gate/b', { note: 'a document, not a blob' });
    await camera.putBlob('photos', 'gate/c', c, { contentType: 'image/png' });
    await camera.putBlob('photos', 'yard/d', randomBytes(10), { contentType: 'image/png' });
    const listed = await camera.list('photos', { prefix: 'gate/' });
    expect(listed.map((d) => [d.key, d.pending])).toEqual([
      ['gate/a', true],
      ['gate/b', true],
      ['gate/c', true],
    ]);
    expect(listed[2]!.value).toEqual({ sha256: contentHash(c), size: 200, contentType: 'image/png' });
    expect((await camera.list('photos', { prefix: 'gate/', after: 'gate/a', limit: 1 })).map((d) => d.key)).toEqual(['gate/b']);
    expect(await camera.list('photos', { confirmed: true })).toEqual([]);
    // Once uploaded and committed, the same documents list as the hub has them.
    await startHub(dir, port);
    await waitFor('the blobs at the hub', () => hub!.core.store.document('photos', 'yard/d'), 20_000);
    // gate/b is no blob: the hub refuses it in a collection of blobs, and the device drops it.
    await waitFor('the page as the hub has it', async () => {
      const page = await camera.list('photos', { prefix: 'gate/' });
      return (
        page.map((d) => `${d.key} ${d.pending} ${(d.value as { sha256?: string }).sha256}`).join(', ') ===
        `gate/a false ${contentHash(a)}, gate/c false ${contentHash(c)}`
      );
    });
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

  it('resumes an upload at the first chunk the hub lacks after a cut link, a hub restart and an agent restart', async () => {
    const dir = tempDir('blobs-mqtt');
    const port = await freePort();
    // The hub reads each device at 1.5 MB/s: the upload takes seconds, and the faults fall in it.
    const throttle = 1_500_000;
    await startHub(dir, port, throttle);
    const chunkMessages = { count: 0 };
    const countChunks = (): void =>
      void hub!.core.on('bytes', (direction, bytes) => direction === 'in' && bytes > BLOB_CHUNK_BYTES && chunkMessages.count++);
    countChunks();
    let device = agent(dir, 'cam-1');
    const chunks = 24;
    const bundle = randomBytes(chunks * BLOB_CHUNK_BYTES - 1000);
    const sha256 = contentHash(bundle);
    await device.putBlob('photos', 'bundle', bundle, { contentType: 'application/gzip' });

    await waitFor('13 chunks at the hub', () => chunksAtHub(dir, sha256, chunks) >= 13, 20_000);
    device.disconnect();
    await waitFor('16 chunks at the hub', () => chunksAtHub(dir, sha256, chunks) >= 16, 20_000);
    await hub!.stop();
    await startHub(dir, port, throttle);
    countChunks();
    await waitFor('19 chunks at the hub', () => chunksAtHub(dir, sha256, chunks) >= 19, 20_000);
    await device.close();
    agents.splice(agents.indexOf(device), 1);
    device = agent(dir, 'cam-1');
    expect(device.status().blobs?.uploads).toMatchObject({ blobs: 1, bytes: bundle.length });

    const committed = await waitFor('the document at the hub', () => hub!.core.store.document('photos', 'bundle'), 30_000);
    expect(committed.value).toEqual({ sha256, size: bundle.length, contentType: 'application/gzip' });
    const object = join(dir, 'hub', 'content', 'objects', sha256.slice(0, 2), sha256);
    const stored = Buffer.concat(Array.from({ length: chunks }, (_, i) => readFileSync(join(object, String(i)))));
    expect(stored.equals(bundle), 'byte-identical at the hub').toBe(true);
    // Resumed, not started over: each fault loses at most the chunks on the link (two) and the one being stored.
    expect(chunkMessages.count).toBeLessThanOrEqual(chunks + 3 * 3);
    await waitFor('the upload forgotten on the device', () => device.status().blobs?.uploads.blobs === 0);
  });

  it('sends an alarm written during a large upload at once, ahead of the blob', async () => {
    const dir = tempDir('blobs-mqtt');
    await startHub(dir, 0, 2_000_000);
    const device = agent(dir, 'cam-1');
    const video = randomBytes(40 * BLOB_CHUNK_BYTES);
    const sha256 = contentHash(video);
    await device.putBlob('photos', 'clip', video, { contentType: 'video/mp4' });
    await waitFor('the upload under way', () => chunksAtHub(dir, sha256, 40) >= 2, 20_000);

    const alarm = await device.put('alarms', 'door', { open: true }, { durability: 'hub' });
    expect(chunksAtHub(dir, sha256, 40), 'the alarm committed with most of the blob still to go').toBeLessThan(40);
    const blob = await waitFor('the blob document at the hub', () => hub!.core.store.document('photos', 'clip'), 30_000);
    expect(alarm.lsn).toBeLessThan(blob.version);
  });

  it("downloads an eager collection's content as its document replicates, and reads it offline", async () => {
    const dir = tempDir('blobs-mqtt');
    await startHub(dir);
    const devices = [agent(dir, 'pi-1'), agent(dir, 'pi-2'), agent(dir, 'pi-3')];
    const uploader = agent(dir, 'build-server');
    const image = randomBytes(5 * BLOB_CHUNK_BYTES + 17);
    await uploader.putBlob('firmware', 'v2', image, { contentType: 'application/x-fw' });

    for (const device of devices) {
      await waitFor(`the firmware held on ${device.id}`, () => device.status().blobs!.cache.bytes >= image.length, 20_000);
    }
    await hub!.stop();
    hub = undefined;
    for (const device of devices) {
      await waitFor('offline', () => !device.status().connected);
      const held = await device.getBlob('firmware', 'v2');
      expect((await held!.bytes()).equals(image), `${device.id} holds it whole`).toBe(true);
    }
  });

  it('keeps content within the cache budget, least recently used out first, never what an upload still needs', async () => {
    const dir = tempDir('blobs-mqtt');
    await startHub(dir);
    const writer = agent(dir, 'cam-1');
    const reader = agent(dir, 'viewer-1', { blobs: { cacheBytes: 2 * BLOB_CHUNK_BYTES } });
    const stills = [0, 1, 2].map(() => randomBytes(BLOB_CHUNK_BYTES - 100));
    for (const [i, still] of stills.entries()) await writer.putBlob('photos', `s${i}`, still);
    await waitFor(
      'every still at the hub',
      async () => (await Promise.all([0, 1, 2].map((i) => reader.get('photos', `s${i}`)))).every(Boolean),
      20_000,
    );

    for (const i of [0, 1, 2]) expect((await (await reader.getBlob('photos', `s${i}`))!.bytes()).equals(stills[i]!)).toBe(true);
    await waitFor('the oldest evicted', () => reader.status().blobs!.cache.bytes <= 2 * BLOB_CHUNK_BYTES);
    const cache = join(dir, 'viewer-1', 'content', 'objects');
    const held = readdirSync(cache).flatMap((shard) => readdirSync(join(cache, shard)));
    expect(held.sort()).toEqual([contentHash(stills[1]!), contentHash(stills[2]!)].sort());
    // Read again: fetched again.
    expect((await (await reader.getBlob('photos', 's0'))!.bytes()).equals(stills[0]!)).toBe(true);

    // Offline, a device's own blobs stay however far past the budget: the hub does not have them yet.
    await hub!.stop();
    hub = undefined;
    await waitFor('offline', () => !reader.status().connected);
    const own = [0, 1, 2].map(() => randomBytes(BLOB_CHUNK_BYTES));
    for (const [i, blob] of own.entries()) await reader.putBlob('photos', `own${i}`, blob);
    for (const [i, blob] of own.entries()) expect((await (await reader.getBlob('photos', `own${i}`))!.bytes()).equals(blob)).toBe(true);
    expect(reader.status().blobs!.uploads).toMatchObject({ blobs: 3, bytes: 3 * BLOB_CHUNK_BYTES });
  });

  it('fans firmware out to 20 devices: the hub publishes each chunk about once, not once per device', async () => {
    const dir = tempDir('blobs-mqtt');
    await startHub(dir);
    const fleet = Array.from({ length: 20 }, (_, i) => agent(dir, `pi-${i}`));
    await waitFor('the fleet connected', () => fleet.every((d) => d.status().connected), 20_000);
    let published = 0;
    hub!.core.on('bytes', (direction, bytes) => direction === 'out' && bytes > BLOB_CHUNK_BYTES / 2 && (published += bytes));
    const image = randomBytes(16 * BLOB_CHUNK_BYTES);
    await agent(dir, 'build-server').putBlob('firmware', 'v3', image, { contentType: 'application/x-fw' });

    for (const device of fleet) {
      await waitFor(`the firmware on ${device.id}`, () => device.status().blobs!.cache.bytes >= image.length, 30_000);
    }
    for (const device of fleet.slice(0, 3)) expect((await (await device.getBlob('firmware', 'v3'))!.bytes()).equals(image)).toBe(true);
    // Twenty separate downloads would publish 20 × the image; in step, the fleet is sent each chunk a few times at most.
    expect(published).toBeGreaterThanOrEqual(image.length);
    expect(published, `published ${published} bytes for a ${image.length}-byte image`).toBeLessThan(5 * image.length);
  });

  // A device's card that rots under blob content: what it reads is checked, and what it sends.
  /** Flips one byte of chunk `index` of content held by device `id`, as a failing card does. */
  const rot = (dir: string, id: string, sha256: string, index: number): void => {
    const file = join(dir, id, 'content', 'objects', sha256.slice(0, 2), sha256, String(index));
    const bytes = readFileSync(file);
    bytes[100] = bytes[100]! ^ 0xff;
    writeFileSync(file, bytes);
  };

  it('fails the read of damaged cached content, never returning its bytes, drops it, and the next read fetches it again', async () => {
    const dir = tempDir('blobs-mqtt');
    await startHub(dir);
    const camera = agent(dir, 'cam-1');
    const viewer = agent(dir, 'viewer-1');
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
    const dir = tempDir('blobs-mqtt');
    const port = await freePort(); // no hub yet: the camera is offline while its card rots
    const camera = agent(dir, 'cam-1', { hubUrl: `mqtt://127.0.0.1:${port}` });
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
