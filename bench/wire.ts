/**
 * Bytes on the wire per write, both directions, counted at a TCP proxy: Outpost uploading a
 * telemetry outbox against the same writes as one JSON MQTT QoS 1 message each.
 */
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Agent } from '../agent/agent.js';
import { Hub } from '../hub/hub.js';
import { FaultProxy } from '../test/chaos/fault-proxy.js';
import { tempDir } from './temp.js';

export interface WireResult {
  outpostBytesPerWrite: number;
  naiveBytesPerWrite: number;
}

const reading = (i: number): { celsius: number; at: number } => ({ celsius: 20 + (i % 50) / 10, at: 1_764_000_000_000 + i * 1000 });

async function outpost(writes: number): Promise<number> {
  const dir = tempDir('bench-wire');
  const hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: join(dir, 'hub'), dev: true });
  const proxy = await FaultProxy.start({ host: '127.0.0.1', port: hub.port });
  proxy.mode = { kind: 'cut' }; // fill the outbox offline, then count one sync
  // Write-only for telemetry, as a sensor is: no change sets come back down.
  const agent = new Agent({
    hubUrl: `mqtt://127.0.0.1:${proxy.port}`,
    agentId: 'pi-wire',
    dataDir: join(dir, 'pi'),
    collections: ['config'],
    reconnect: { initialMs: 20, maxMs: 50 },
  }).start();
  await Promise.all(Array.from({ length: writes }, (_, i) => agent.put('telemetry', `t${i}`, reading(i))));
  proxy.mode = { kind: 'pass' };
  while (hub.store.head < writes || agent.status().outboxDepth > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  await new Promise((resolve) => setTimeout(resolve, 200)); // the last acks and change sets
  const bytes = proxy.bytesUp + proxy.bytesDown;
  await agent.close();
  await proxy.close();
  await hub.stop();
  return bytes / writes;
}

async function naive(writes: number): Promise<number> {
  const broker = await Aedes.createBroker();
  const server = createServer(broker.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy = await FaultProxy.start({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${proxy.port}`, { clientId: 'pi-naive' });
  const before = proxy.bytesUp + proxy.bytesDown; // the connection itself is not a write
  for (let i = 0; i < writes; i++) await client.publishAsync(`devices/pi-naive/telemetry/t${i}`, JSON.stringify(reading(i)), { qos: 1 });
  const bytes = proxy.bytesUp + proxy.bytesDown - before;
  await client.endAsync();
  await proxy.close();
  await new Promise<void>((resolve) => broker.close(() => resolve()));
  server.close();
  return bytes / writes;
}

export async function benchWire(quick: boolean): Promise<WireResult> {
  const writes = quick ? 200 : 2_000;
  return { outpostBytesPerWrite: await outpost(writes), naiveBytesPerWrite: await naive(writes) };
}
