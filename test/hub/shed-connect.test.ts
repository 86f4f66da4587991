import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { remainingLength } from '../helpers/attackers.js';
import { HubUnderAttack } from '../helpers/hub-under-attack.js';
import { waitFor } from '../helpers/wait.js';

const MiB = 1024 * 1024;

/**
 * An anonymous client that starts a CONNECT announcing `announced` bytes and sends `sent` of
 * them as fast as the hub takes them, never finishing. Resolves with the socket once it sent
 * them all or the hub closed it.
 */
async function halfSentConnect(port: number, announced: number, sent: number, chunk: Buffer): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const closed = new Promise((resolve) => socket.once('close', resolve));
  socket.write(Buffer.concat([Buffer.from([0x10]), remainingLength(announced)]));
  for (let written = 0; written < sent && !socket.destroyed; written += chunk.length) {
    if (!socket.write(chunk)) await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), closed]);
  }
  return socket;
}

describe('a hub under attack: CONNECTs that never finish', () => {
  let bench: HubUnderAttack | undefined;
  afterEach(async () => {
    await bench?.stop();
    bench = undefined;
  });

  it('closes each connection at the header of a CONNECT over maxConnectBytes: 250 half-sent 4 MiB CONNECTs do not grow the hub', async () => {
    bench = await HubUnderAttack.start();
    await bench.startLoad(20, 1024);
    const chunk = Buffer.alloc(64 * 1024);
    // Without the limit the hub buffers every byte sent (up to ~875 MB) and holds it for the 10 s connect timeout.
    const { result: sockets, peakGrowth } = await bench.peakRssGrowthDuring(() =>
      Promise.all(Array.from({ length: 250 }, () => halfSentConnect(bench!.mqttPort, 4 * MiB - 16, 3.5 * MiB, chunk))),
    );
    expect(peakGrowth, 'hub RSS growth while the CONNECTs were sent (bytes)').toBeLessThan(200 * MiB);
    await waitFor('the hub closed every half-sent CONNECT', () => sockets.every((s) => s.destroyed || s.closed), 5_000);
    expect(await bench.shed('connect_too_large')).toBeGreaterThanOrEqual(250);
    await bench.expectHealthy();
    sockets.forEach((s) => s.destroy());
  }, 60_000);
});
