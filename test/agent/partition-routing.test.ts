import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { DurabilityWaiters } from '../../agent/durability.js';
import type { Transport, TransportDelegate } from '../../agent/transport.js';
import { CollectionPolicies, DEFAULT_HUB_CONFIG } from '../../hub/config.js';
import { broadcastCodec, upCodec } from '../../shared/codec.js';
import { encodeHlc } from '../../shared/hlc.js';
import { PROTOCOL_VERSION } from '../../shared/protocol-version.js';
import { partitionTopics, topics } from '../../shared/topics.js';
import { tempDir } from '../helpers/temp.js';

/** A connection the test drives by hand: it records what the agent publishes and grants subscriptions when told. */
class HandTransport implements Transport {
  connected = false;
  readonly session = '0123456789abcdef';
  readonly sent: Array<{ topic: string; type: string; collections: string[] }> = [];
  readonly subscriptions: string[] = [];
  #grant: (() => void) | undefined;

  constructor(
    readonly delegate: TransportDelegate,
    initial: readonly string[],
  ) {
    this.subscriptions.push(...initial);
  }

  start(): void {
    this.connected = true;
    this.delegate.onConnected();
  }

  publish(topic: string, payload: Buffer): boolean {
    if (!this.connected) return false;
    const message = upCodec.decode(payload);
    this.sent.push({ topic, type: message[0], collections: message[0] === 'batch' ? message[1].ops.map((op) => op.c) : [] });
    return true;
  }

  subscribe(filters: readonly string[]): Promise<void> {
    return new Promise((resolve) => {
      this.#grant = () => {
        this.subscriptions.push(...filters.filter((f) => !this.subscriptions.includes(f)));
        resolve();
      };
    });
  }

  /** The broker's SUBACK for the subscriptions asked for last. */
  grant(): void {
    this.#grant?.();
  }

  disconnect(): void {}
  stop(): Promise<void> {
    this.connected = false;
    return Promise.resolve();
  }
}

/** The default partition's retained status, saying that `orders` lives in partition `billing`. */
const status = broadcastCodec.encode([
  'hub',
  {
    v: PROTOCOL_VERSION,
    hlc: encodeHlc(Date.now(), 0),
    head: 0,
    lin: '0'.repeat(32),
    fork: 0,
    parts: { orders: 'billing' },
    ...new CollectionPolicies(DEFAULT_HUB_CONFIG).describe(),
  },
]);

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('agent routing of writes to partitions', () => {
  let agent: Agent | undefined;
  afterEach(async () => agent?.close());

  it('a write stored after the assignment arrives joins its partition, even if it was made just before', async () => {
    let link: HandTransport | undefined;
    agent = new Agent({
      agentId: 'pi-1',
      hubUrl: 'hand://hub',
      dataDir: join(tempDir('routing'), 'pi-1'),
      transport: (delegate, subscriptions) => (link = new HandTransport(delegate, subscriptions)),
    }).start();
    await settle();
    // Unknown assignment: nothing goes up, nothing is pulled (but the hello that says the device listens).
    expect(link!.sent.filter((m) => m.type !== 'hello')).toEqual([]);

    const early = await agent.put('orders', 'o1', 1); // stored before the hub was heard: default lane for now
    const made = agent.put('orders', 'o2', 2); // stored at the next turn of the event loop...
    await link!.delegate.onMessage(topics.hub, status); // ...after the status, which arrives first
    const late = await made;
    expect(early.partition).toBeUndefined();
    expect(late).toMatchObject({ partition: 'billing', seq: 2 }); // behind the early write, which moved there as seq 1

    // The billing lane's topics are asked for, and nothing goes up on them before the SUBACK:
    // an ack published before the broker knows the subscription would be lost. (A status report,
    // which asks for no answer, may go once its timer fires, on a slow machine before the SUBACK.)
    await settle();
    expect(link!.sent.filter((m) => m.topic === partitionTopics('billing').up('pi-1') && m.type !== 'status')).toEqual([]);
    link!.grant();
    await settle();
    const billingUp = link!.sent.filter((m) => m.topic === partitionTopics('billing').up('pi-1') && m.type === 'batch');
    expect(billingUp.flatMap((m) => m.collections)).toEqual(['orders', 'orders']);
    // The default lane sends only the early write's placeholder (a skip), never an `orders` op.
    const defaultUp = link!.sent.filter((m) => m.topic === topics.up('pi-1') && m.type === 'batch');
    expect(defaultUp.flatMap((m) => m.collections)).toEqual(['orders']);
    expect(agent.status().collections.orders?.pending).toBe(2);
  });

  it("a wait moved to another partition times out on its own; it never ends another write's wait", async () => {
    const defaults = new DurabilityWaiters(() => true);
    const billing = new DurabilityWaiters(() => true);
    const moved = defaults.wait(2, 'alarms', 'hub', 30);
    defaults.moveTo(2, billing, { partition: 'billing', incarnation: 'ab'.repeat(16), seq: 1 });
    const other = defaults.wait(2, 'alarms', 'hub', 2_000); // a new write took seq 2 of the default lane
    await expect(moved).rejects.toMatchObject({ code: 'OUTPOST_DURABILITY_TIMEOUT' });
    defaults.onResults([{ seq: 2, outcome: 'committed', lsn: 9 }]);
    await expect(other).resolves.toBe(9);
  });
});
