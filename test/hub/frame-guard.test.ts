import { connect } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { FrameMeter } from '../../hub/frame-guard.js';
import { Hub } from '../../hub/hub.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

const publish = (bytes: number): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(bytes), qos: 0, retain: false, dup: false });

describe('frame meter', () => {
  it('passes packets within the limit, however the bytes are split', () => {
    const stream = Buffer.concat([publish(10), publish(300), publish(0), publish(1000)]);
    for (const size of [1, 2, 7, 64, stream.length]) {
      const meter = new FrameMeter(1100);
      for (let i = 0; i < stream.length; i += size) expect(meter.feed(stream.subarray(i, i + size))).toBe(true);
    }
  });

  it('refuses a packet that announces more than the limit, from its header alone', () => {
    const meter = new FrameMeter(1000);
    expect(meter.feed(publish(500))).toBe(true);
    expect(meter.feed(publish(5000).subarray(0, 4))).toBe(false);
  });

  it('before login, wants a CONNECT first and holds every packet to the login limit; after admit(), to the packet limit', () => {
    const connect = mqttPacket.generate({
      cmd: 'connect',
      clientId: 'pi-1',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      keepalive: 30,
    });
    const notConnect = new FrameMeter(1 << 20, 8192);
    expect(notConnect.feed(publish(10))).toBe(false);
    expect(notConnect.refused).toBe('not_connect');

    const hugeConnect = new FrameMeter(1 << 20, 8192);
    expect(hugeConnect.feed(Buffer.from([0x10, 0x80, 0x80, 0x02]))).toBe(false); // a CONNECT announcing 32 KiB
    expect(hugeConnect.refused).toBe('connect_too_large');

    const meter = new FrameMeter(1 << 20, 8192);
    expect(meter.feed(connect)).toBe(true);
    expect(new FrameMeter(1 << 20, 8192).feed(Buffer.concat([connect, publish(10_000)]))).toBe(false); // not logged in yet
    meter.admit();
    expect(meter.feed(publish(100_000))).toBe(true);
    expect(meter.feed(publish(2 << 20).subarray(0, 5))).toBe(false);
    expect(meter.refused).toBe('packet_too_large');
  });

  it('refuses a length field longer than MQTT allows', () => {
    expect(new FrameMeter(1 << 30).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBe(false);
  });
});

describe('hub packet limit', () => {
  let hub: Hub;
  afterEach(async () => hub.stop());

  it('closes a logged-in connection that announces a huge packet, before the body is sent', async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('guard'), dev: true, maxPacketBytes: 64 * 1024 });
    const shed: string[] = [];
    hub.shedLog.on('shed', (reason) => shed.push(reason));
    const socket = connect(hub.port, '127.0.0.1');
    let closed = false;
    let received = 0;
    socket.on('close', () => (closed = true));
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      mqttPacket.generate({ cmd: 'connect', clientId: 'pi-big', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30 }),
    );
    // Logged in first: the limit after login is the one under test, not the one on the CONNECT.
    await waitFor('CONNACK', () => received >= 4, 5_000);
    // A PUBLISH announcing 200 MB: header only.
    socket.write(Buffer.from([0x30, 0x80, 0x80, 0xe8, 0x5f]));
    await waitFor('hub closes the connection', () => closed, 5_000);
    expect(hub.connectedAgents).toBe(0);
    expect(shed).toEqual(['packet_too_large']);
  });

  it("does not buffer the body of an oversized packet: the hub's memory does not grow by its size", async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('guard'), dev: true });
    const socket = connect(hub.port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      mqttPacket.generate({ cmd: 'connect', clientId: 'pi-big', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30 }),
    );
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    global.gc?.();
    const before = process.memoryUsage();
    // A PUBLISH announcing 200 MB, then 64 MB of its body as fast as the socket takes it.
    socket.write(Buffer.from([0x30, 0x80, 0x80, 0xe8, 0x5f]));
    for (let i = 0; i < 64 && !socket.destroyed; i++) {
      if (!socket.write(chunk))
        await Promise.race([
          new Promise((resolve) => socket.once('drain', resolve)),
          new Promise((resolve) => socket.once('close', resolve)),
        ]);
    }
    await waitFor('hub closes the connection', () => socket.destroyed || socket.closed, 5_000);
    global.gc?.();
    const after = process.memoryUsage();
    const grown = after.arrayBuffers + after.heapUsed - (before.arrayBuffers + before.heapUsed);
    expect(grown).toBeLessThan(16 * 1024 * 1024);
  });
});
