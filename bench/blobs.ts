/**
 * Blobs. Upload: a device's `putBlob` of N MiB (50; quick 8), from the call until the hub has
 * committed its document (the content stored on the device, uploaded a chunk at a time behind
 * writes, each chunk fsynced at the hub, the whole checked), against raw MQTT QoS 1 of the same
 * bytes (256 KiB messages, all in flight, until every PUBACK) to a bare aedes broker on the same
 * loopback, in the same process and run. The hub's per-device inbound limit is lifted for it (by
 * default it reads one device at 8 MB/s).
 *
 * Fan-out: 20 devices holding an `eager` collection fetch an M MiB firmware image (20; quick 4)
 * as its document replicates; the blob bytes the hub published, against 20 separate downloads'
 * (20 × the image).
 *
 * Standalone: tsx bench/blobs.ts [--quick]
 */
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { Agent } from '../agent/agent.js';
import { parseHubConfig } from '../hub/config.js';
import { Hub } from '../hub/hub.js';
import { BLOB_CHUNK_BYTES } from '../shared/blobs.js';
import { until } from './stats.js';
import { tempDir } from './temp.js';

export interface BlobsResult {
  bytes: number;
  /** Upload through Outpost, MB/s (10^6 bytes). */
  outpostMBps: number;
  /** The same bytes as raw MQTT QoS 1, MB/s. */
  rawMBps: number;
  fanOut: { devices: number; imageBytes: number; publishedBytes: number };
}

const config = parseHubConfig({
  collections: { clips: { blobs: 'lazy' }, firmware: { blobs: 'eager' } },
  access: { default: { read: ['*'], write: ['*'] } },
});

async function outpostUpload(content: Buffer): Promise<number> {
  const dir = tempDir('bench-blobs');
  const hub = await Hub.start({ port: 0, host: '127.0.0.1', dev: true, dataDir: join(dir, 'hub'), config, maxInboundBytesPerSecond: 1e10 });
  const agent = new Agent({ hubUrl: `mqtt://127.0.0.1:${hub.port}`, agentId: 'cam-1', dataDir: join(dir, 'cam-1') }).start();
  await until('connected', () => agent.status().connected, 10_000);
  const started = performance.now();
  await agent.putBlob('clips', 'c1', content, { contentType: 'video/mp4' });
  await until('the document committed', async () => (await hub.core.store.document('clips', 'c1')) !== undefined, 600_000, 5);
  const seconds = (performance.now() - started) / 1000;
  await agent.close();
  await hub.stop();
  return content.length / seconds / 1e6;
}

async function rawUpload(content: Buffer): Promise<number> {
  const broker = await Aedes.createBroker();
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    broker.handle(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`, { clientId: 'cam-raw' });
  const started = performance.now();
  const sends: Array<Promise<unknown>> = [];
  for (let at = 0; at < content.length; at += BLOB_CHUNK_BYTES) {
    sends.push(client.publishAsync('raw/cam-raw/chunk', content.subarray(at, at + BLOB_CHUNK_BYTES), { qos: 1 }));
  }
  await Promise.all(sends);
  const seconds = (performance.now() - started) / 1000;
  await client.endAsync();
  await new Promise<void>((resolve) => broker.close(() => resolve()));
  server.close();
  return content.length / seconds / 1e6;
}

async function fanOut(devices: number, image: Buffer): Promise<BlobsResult['fanOut']> {
  const dir = tempDir('bench-blobs-fan');
  const hub = await Hub.start({ port: 0, host: '127.0.0.1', dev: true, dataDir: join(dir, 'hub'), config, maxInboundBytesPerSecond: 1e10 });
  const url = `mqtt://127.0.0.1:${hub.port}`;
  const fleet = Array.from({ length: devices }, (_, i) =>
    new Agent({ hubUrl: url, agentId: `pi-${i}`, dataDir: join(dir, `pi-${i}`) }).start(),
  );
  await until('the fleet connected', () => fleet.every((a) => a.status().connected), 30_000);
  let publishedBytes = 0;
  hub.core.on('bytes', (direction, bytes) => {
    if (direction === 'out' && bytes > BLOB_CHUNK_BYTES / 2) publishedBytes += bytes;
  });
  const builder = new Agent({ hubUrl: url, agentId: 'build-server', dataDir: join(dir, 'build') }).start();
  await builder.putBlob('firmware', 'v1', image, { contentType: 'application/x-fw' });
  await until('every device holds the image', () => fleet.every((a) => a.status().blobs!.cache.bytes >= image.length), 600_000, 50);
  await Promise.all([...fleet, builder].map((a) => a.close()));
  await hub.stop();
  return { devices, imageBytes: image.length, publishedBytes };
}

export async function benchBlobs(quick: boolean): Promise<BlobsResult> {
  const content = randomBytes((quick ? 8 : 50) * 1024 * 1024);
  const outpostMBps = await outpostUpload(content);
  const rawMBps = await rawUpload(content);
  return { bytes: content.length, outpostMBps, rawMBps, fanOut: await fanOut(20, randomBytes((quick ? 4 : 20) * 1024 * 1024)) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchBlobs(process.argv.includes('--quick'));
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  process.exit(0);
}
