import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { upCodec } from '../../shared/codec.js';
import { topics } from '../../shared/topics.js';
import { HubUnderAttack, STOLEN_ID } from '../helpers/hub-under-attack.js';
import { waitFor } from '../helpers/wait.js';

const MiB = 1024 * 1024;

/**
 * A device whose credential was stolen, reading everything it is sent and asking again as fast
 * as it can (a real hub process, two legit agents writing and replicating throughout): what it
 * costs the hub is held to per-client budgets, and the client is slowed, not served more.
 */
describe('a hub under attack: a client that reads as fast as it asks', () => {
  let bench: HubUnderAttack | undefined;
  afterEach(async () => {
    await bench?.stop();
    bench = undefined;
  });

  it('pulls asked back to back by a client that reads them: pages held to maxPullBytesPerSecond', async () => {
    bench = await HubUnderAttack.start(['--max-pull-bytes-per-second', String(MiB)]);
    await bench.seedBulk();
    await bench.startLoad(20, 1024);
    const client = await bench.stolen();
    await client.subscribeAsync(topics.down(STOLEN_ID), { qos: 1 });
    let received = 0;
    let pages = 0;
    let id = 0;
    const pull = (): void =>
      void client.publish(topics.up(STOLEN_ID), Buffer.from(upCodec.encode(['pull', { id: ++id, from: 0, limit: 10_000 }])));
    client.on('message', (_topic, payload) => {
      received += payload.length;
      pages += 1;
      pull(); // the next at once: as fast as it reads
    });
    const SECONDS = 4;
    const started = Date.now();
    for (let i = 0; i < 4; i++) pull();
    await waitFor(`${SECONDS} s of pulling`, () => Date.now() - started >= SECONDS * 1000, SECONDS * 1000 + 1_000);
    const seconds = (Date.now() - started) / 1000;
    client.removeAllListeners('message');
    // The budget: 1 MiB saved up, 1 MiB a second, and the page under way when it ran out.
    // Unbounded, the hub built a page for it every few milliseconds (tens of MB a second).
    expect(pages, 'pages received').toBeGreaterThan(1);
    expect(received, `bytes received in ${seconds} s`).toBeLessThan((1 + seconds) * MiB + 0.6 * MiB);
    await bench.expectHealthy();
    await client.endAsync();
  }, 90_000);

  it('a client that sends faster than maxInboundBytesPerSecond is read no faster: slowed, nothing it sent lost, not dropped', async () => {
    bench = await HubUnderAttack.start(['--max-inbound-bytes-per-second', String(64 * 1024)]);
    await bench.startLoad(20, 1024);
    const client = await bench.stolen();
    // 96 status reports of over 4 KB each (over 384 KiB): collections the hub does not keep.
    // Random names, so that deflate cannot shrink them.
    const applied = Object.fromEntries(Array.from({ length: 320 }, (_, i) => [randomBytes(10).toString('hex'), i + 1]));
    const report = Buffer.from(upCodec.encode(['status', { applied, outbox: 0 }]));
    expect(report.length).toBeGreaterThan(4_000);
    const started = Date.now();
    await Promise.all(Array.from({ length: 96 }, () => client.publishAsync(topics.up(STOLEN_ID), report, { qos: 1 })));
    const seconds = (Date.now() - started) / 1000;
    // 128 KiB saved up, then 64 KiB a second, read a chunk (up to 64 KiB) at a time: the rest
    // took at least (384 - 128 - 64) / 64 = 3 s to be read (a few milliseconds without the
    // budget). Every publish was acknowledged.
    expect(seconds, 'seconds until every report was acknowledged').toBeGreaterThan(2.5);
    expect(client.connected).toBe(true);
    expect(await bench.shed('inbound_rate')).toBeGreaterThan(0);
    await bench.expectHealthy();
    await client.endAsync();
  }, 60_000);

  it('status reports flooded: the newest taken, twenty a second at most, the rest replaced', async () => {
    bench = await HubUnderAttack.start();
    await bench.startLoad(20, 1024);
    const client = await bench.stolen();
    const report = (n: number): Buffer => Buffer.from(upCodec.encode(['status', { applied: { load: n }, outbox: n }]));
    const started = Date.now();
    for (let n = 1; n <= 2_000; n++) client.publish(topics.up(STOLEN_ID), report(n));
    await client.publishAsync(topics.up(STOLEN_ID), report(2_001), { qos: 1 });
    const seconds = (Date.now() - started) / 1000;
    // Of 2,001 reports sent in `seconds`, the hub took at most 20 saved up and 20 a second.
    const replaced = await waitFor('reports replaced', async () => {
      const n = await bench!.refused('status_superseded');
      return n > 0 ? n : undefined;
    });
    expect(replaced, `reports replaced of 2,001 sent in ${seconds} s`).toBeGreaterThan(2_001 - (20 + 20 * (seconds + 1)) - 2);
    // The newest is taken once the budget allows: the fleet view shows its outbox.
    await waitFor('the newest report taken', async () => {
      const view = (await (await fetch(`${bench!.httpUrl}/v1/agents/${STOLEN_ID}`)).json()) as { outboxDepth?: number };
      return view.outboxDepth === 2_001;
    });
    await bench.expectHealthy();
    await client.endAsync();
  }, 60_000);

  it('subscriptions past the most one client may make are refused, the client stays', async () => {
    bench = await HubUnderAttack.start();
    await bench.startLoad(20, 1024);
    const client = await bench.stolen();
    let granted = 0;
    let refused = 0;
    for (let batch = 0; batch < 15; batch++) {
      const names = Array.from({ length: 100 }, (_, i) => topics.collection(`sub-${batch}-${i}`));
      // MQTT.js rejects a SUBSCRIBE with any topic refused; the SUBACK it carries says which.
      const grants = await client.subscribeAsync(names, { qos: 1 }).then(
        (g) => g.map(({ qos }) => qos),
        (error: { packet?: { granted?: number[] } }) => error.packet?.granted ?? [],
      );
      expect(grants).toHaveLength(100);
      for (const qos of grants) {
        if (qos === 128) refused += 1;
        else granted += 1;
      }
    }
    // The same topic again is not a new one; it is granted.
    const again = await client.subscribeAsync(topics.collection('sub-0-0'), { qos: 1 });
    expect(again[0]!.qos).toBe(1);
    expect([granted, refused]).toEqual([1_000, 500]);
    expect(await bench.shed('subscriptions')).toBe(500);
    expect(client.connected).toBe(true);
    await bench.expectHealthy();
    await client.endAsync();
  }, 60_000);
});
