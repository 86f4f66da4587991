import { connect, type Socket } from 'node:net';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { remainingLength } from '../helpers/attackers.js';
import { HubUnderAttack, STOLEN_ID } from '../helpers/hub-under-attack.js';
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
    // All 250 from one address wait to log in at once: let them, to see each refused at its header.
    bench = await HubUnderAttack.start(['--max-pending-logins-per-address', '1000']);
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

  it('holds at most maxPendingLogins connections that never log in, shared fairly between addresses, and maxPendingLoginsPerAddress of one; a closed one frees its place', async () => {
    bench = await HubUnderAttack.start(['--max-pending-logins', '150', '--max-pending-logins-per-address', '100']);
    await bench.startLoad(20, 1024);
    /** Sockets from `from` that connect and send nothing, as a scan or a stalled TLS client would. */
    const idle = async (from: string, n: number): Promise<Socket[]> =>
      Promise.all(
        Array.from({ length: n }, async () => {
          const socket = connect({ port: bench!.mqttPort, host: '127.0.0.1', localAddress: from });
          socket.on('error', () => undefined);
          await new Promise((resolve) => socket.once('connect', resolve).once('close', resolve));
          return socket;
        }),
      );
    // 100 from one address (its most), 100 from a second, 50 from a third: 150 fit in the total,
    // and each newcomer past it takes the place of the oldest of the address holding the most
    // (while that holds more than the newcomer's would), so each address ends with its share.
    const sockets = [...(await idle('127.0.0.2', 100)), ...(await idle('127.0.0.3', 100)), ...(await idle('127.0.0.4', 50))];
    await waitFor('100 connections closed', async () => (await bench!.shed('pending_logins')) === 100);
    await waitFor('the client saw them closed', () => sockets.filter((s) => s.destroyed || s.closed).length === 100);
    const open = (from: number, to: number): number => sockets.slice(from, to).filter((s) => !s.closed && !s.destroyed).length;
    expect([open(0, 100), open(100, 200), open(200, 250)]).toEqual([50, 50, 50]);
    await bench.expectHealthy();
    // Once they close, a login from a full address gets its place back.
    sockets.forEach((s) => s.destroy());
    const device = await waitFor('a login from 127.0.0.2 again', () =>
      mqtt
        .connectAsync(bench!.mqttUrl, {
          clientId: STOLEN_ID,
          username: STOLEN_ID,
          password: bench!.stolenToken,
          reconnectPeriod: 0,
          localAddress: '127.0.0.2',
        } as mqtt.IClientOptions)
        .catch(() => undefined),
    );
    await device.endAsync();
  }, 60_000);
});
