import { afterEach, describe, expect, it } from 'vitest';
import { upCodec } from '../../shared/codec.js';
import { HybridClock } from '../../shared/hlc.js';
import { limits } from '../../shared/limits.js';
import { topics } from '../../shared/topics.js';
import { frozenSubscriber, upPublish } from '../helpers/attackers.js';
import { HubUnderAttack, STOLEN_ID } from '../helpers/hub-under-attack.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { encodeValue } from '../../shared/value-bytes.js';

/**
 * A device whose credential was stolen, attacking with valid messages (a real hub process, two
 * legit agents writing and replicating throughout): each attack costs the hub a bounded amount,
 * and the legit devices keep replicating.
 */
describe('a hub under attack: valid messages in shapes no device sends', () => {
  let bench: HubUnderAttack | undefined;
  afterEach(async () => {
    await bench?.stop();
    bench = undefined;
  });

  it('a pull flood from a client that stops reading: one page at a time, the client shed, the hub responsive', async () => {
    bench = await HubUnderAttack.start();
    await bench.seedBulk();
    await bench.startLoad(20, 1024);
    const attacker = await frozenSubscriber(bench.mqttPort, bench.stolenToken);
    let closed = false;
    attacker.once('close', () => (closed = true));
    const pull = (id: number): Buffer => upPublish(upCodec.encode(['pull', { id, from: 0, limit: 10_000 }]));
    // About 240 pulls a second for 5 s, or until it is shed.
    const { peakGrowth } = await bench.peakRssGrowthDuring(async () => {
      for (let id = 1; !closed && id <= 1_200; id++) {
        attacker.write(pull(id));
        if (id % 12 === 0) await sleep(50);
      }
    });
    await waitFor('the attacker shed', () => closed, 10_000);
    expect(await bench.shed('slow_consumer')).toBeGreaterThanOrEqual(1);
    // Pulls were answered one at a time: most were replaced before a page was built for them.
    expect(await bench.refused('pull_superseded')).toBeGreaterThan(0);
    expect(peakGrowth, 'peak hub RSS growth (bytes)').toBeLessThan(200 * 1024 * 1024);
    await bench.expectHealthy();
    attacker.destroy();
  }, 90_000);

  it('status reports naming 40,000 made-up collections, ten times: nothing kept, the fleet listing stays small', async () => {
    bench = await HubUnderAttack.start();
    await bench.startLoad(20, 1024);
    const client = await bench.stolen();
    const applied: Record<string, number> = {};
    for (let i = 0; i < 40_000; i++) applied[`made-up-${i}`] = i + 1;
    const { peakGrowth } = await bench.peakRssGrowthDuring(async () => {
      for (let i = 0; i < 10; i++)
        await client.publishAsync(topics.up(STOLEN_ID), upCodec.encode(['status', { applied, outbox: 0 }]), { qos: 1 });
    });
    const started = Date.now();
    const listing = await fetch(`${bench.httpUrl}/v1/agents`);
    const body = await listing.text();
    expect(listing.status).toBe(200);
    expect(body).not.toContain('made-up-');
    expect(await bench.refused('status_collection')).toBe(400_000);
    expect(body.length, 'fleet listing bytes').toBeLessThan(100_000);
    expect(Date.now() - started, 'fleet listing ms').toBeLessThan(2_000);
    expect(peakGrowth, 'peak hub RSS growth (bytes)').toBeLessThan(200 * 1024 * 1024);
    await bench.expectHealthy();
    await client.endAsync();
  }, 90_000);

  it('batches whose every op asks a thousand replicas: waits bounded, the cost per batch flat, legit latency kept', async () => {
    bench = await HubUnderAttack.start();
    await bench.startLoad(20, 1024);
    const client = await bench.stolen();
    const acks: number[] = [];
    client.on('message', (topic) => topic === topics.down(STOLEN_ID) && acks.push(Date.now()));
    await client.subscribeAsync(topics.down(STOLEN_ID), { qos: 1 });
    const inc = 'ab'.repeat(16);
    const clock = new HybridClock(); // each op later than the one before: every op commits
    let seq = 0;
    const BATCHES = 60;
    const took: number[] = [];
    const { peakGrowth } = await bench.peakRssGrowthDuring(async () => {
      for (let b = 0; b < BATCHES; b++) {
        const ops = Array.from({ length: limits.maxBatchOps }, () => {
          seq += 1;
          return { seq, c: 'stolen', k: `k${seq % 100}`, op: 'put' as const, v: encodeValue(seq), hlc: clock.tick(), rep: 1000 };
        });
        const sent = Date.now();
        const before = acks.length;
        await client.publishAsync(topics.up(STOLEN_ID), upCodec.encode(['batch', { inc, ops }]), { qos: 1 });
        await waitFor(`the ack of batch ${b + 1}`, () => acks.length > before, 30_000);
        took.push(Date.now() - sent);
      }
    });
    // At most 10,000 waits are held for one writer; the rest were refused, and counted.
    expect(await bench.refused('replica_wait')).toBe(BATCHES * limits.maxBatchOps - 10_000);
    // The hub's cost per batch does not grow with the waits it holds (it was 9× after 300 batches).
    const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    const first = median(took.slice(0, 10));
    const last = median(took.slice(-10));
    expect(last, `ack time of the last batches (ms), the first took ${first}`).toBeLessThan(Math.max(4 * first, first + 1_000));
    expect(peakGrowth, 'peak hub RSS growth (bytes)').toBeLessThan(200 * 1024 * 1024);
    await bench.expectHealthy();
    await client.endAsync();
  }, 180_000);
});
