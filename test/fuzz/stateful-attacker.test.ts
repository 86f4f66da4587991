import fc from 'fast-check';
import { connect, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { MAX_SUBSCRIPTIONS_PER_CLIENT } from '../../hub/broker.js';
import { DEFAULT_MAX_CONNECT_BYTES } from '../../hub/hub.js';
import { encodeCbor } from '../../shared/codec.js';
import { limits } from '../../shared/limits.js';
import { topics } from '../../shared/topics.js';
import { TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';
import { remainingLength } from '../helpers/attackers.js';
import { freshInc, nowHlc, type WireOp } from './craft.js';
import { Attacker, HonestWorkload, ProcessGuard } from './harness.js';

/**
 * A stateful attacker, not only bad bytes: unfinished frames before login that announce more
 * than a CONNECT needs or are no CONNECT at all, and valid messages in shapes an honest agent
 * never sends, in random order — pull floods, status reports naming made-up collections and forged
 * replica waits, status reports back to back, batches whose every op asks a thousand replicas,
 * subscriptions past the limit. After each sequence the
 * hub's state for the attacker stays within its bounds, and an honest agent writing alongside
 * loses nothing.
 */

const ATTACKER = 'rogue-2';
const HONEST = 'pi-honest-2';

type Action =
  | { kind: 'preLogin'; sockets: number; announced: number; sent: number; firstByte: number }
  | { kind: 'pulls'; count: number }
  | { kind: 'status'; madeUp: number; fakeWaits: number }
  | { kind: 'waits'; ops: number }
  | { kind: 'subscribe'; topics: number }
  | { kind: 'statusFlood'; count: number };

const action: fc.Arbitrary<Action> = fc.oneof(
  // Before login: frames announcing more than a CONNECT ever needs, or not a CONNECT at all,
  // left unfinished (an anonymous client holding the hub's memory until the connect timeout).
  fc.record({
    kind: fc.constant('preLogin' as const),
    sockets: fc.integer({ min: 1, max: 20 }),
    // Over the limit for a CONNECT; any size for a packet that is no CONNECT.
    announced: fc.integer({ min: 0, max: 4 * 1024 * 1024 - 1 }),
    sent: fc.integer({ min: 0, max: 64 * 1024 }),
    // 0x10 is CONNECT; 0x30 PUBLISH, 0x82 SUBSCRIBE, 0xc0 PINGREQ: none may come first.
    firstByte: fc.constantFrom(0x10, 0x30, 0x82, 0xc0),
  }),
  fc.record({ kind: fc.constant('pulls' as const), count: fc.integer({ min: 1, max: 200 }) }),
  fc.record({
    kind: fc.constant('status' as const),
    madeUp: fc.integer({ min: 0, max: 5_000 }),
    fakeWaits: fc.integer({ min: 0, max: 1_000 }),
  }),
  fc.record({ kind: fc.constant('waits' as const), ops: fc.integer({ min: 1, max: limits.maxBatchOps }) }),
  // Subscriptions to ever more collections, past the most one connection may make.
  fc.record({ kind: fc.constant('subscribe' as const), topics: fc.integer({ min: 1, max: 400 }) }),
  // Status reports back to back, far faster than an agent's one per 50 ms.
  fc.record({ kind: fc.constant('statusFlood' as const), count: fc.integer({ min: 1, max: 500 }) }),
);

describe('a hub attacked by a stateful client, with an honest agent alongside', () => {
  const guard = new ProcessGuard();
  const fleet = new TestFleet();
  let honest: Agent;
  let workload: HonestWorkload;
  let attacker: Attacker;
  let pullId = 0;
  let seq = 0;
  let subscribed = 0;
  let reportNo = 0;
  const inc = freshInc();

  beforeAll(async () => {
    guard.install();
    await fleet.startHub();
    // Something to page: a pull flood must cost real pages.
    for (let i = 0; i < 20; i++) await fleet.hub!.core.write({ c: 'bulk', k: `b${i}`, op: 'put', v: 'x'.repeat(8_000) });
    honest = fleet.agent(HONEST);
    await waitFor('the honest agent to connect', () => honest.status().connected);
    workload = new HonestWorkload(fleet, honest);
    attacker = await Attacker.connect(fleet.port, ATTACKER);
  });

  afterAll(async () => {
    await attacker.end();
    await fleet.close();
    guard.uninstall();
  });

  beforeEach(() => workload.start());

  afterEach(async () => {
    await workload.stopAndVerify();
    expect(guard.take(), 'errors the hub left unhandled').toEqual([]);
  });

  async function perform(a: Action): Promise<void> {
    const core = fleet.hub!.core;
    const up = topics.up(ATTACKER);
    if (a.kind === 'preLogin') {
      const sockets = await Promise.all(Array.from({ length: a.sockets }, () => openSocket(fleet.port)));
      for (const socket of sockets) {
        const announced = a.firstByte === 0x10 ? Math.max(a.announced, DEFAULT_MAX_CONNECT_BYTES + 1) : a.announced;
        socket.write(
          Buffer.concat([Buffer.from([a.firstByte]), remainingLength(announced), Buffer.alloc(Math.min(a.sent, announced), 0x61)]),
        );
      }
      // Each is closed at its header, long before the connect timeout.
      await waitFor('every socket closed by the hub', () => sockets.every((s) => s.closed), 5_000);
    } else if (a.kind === 'pulls') {
      const answered = new Set<number>();
      let superseded = 0;
      const listener = (agentId: string, pull: { id: number }): void => void (agentId === ATTACKER && answered.add(pull.id));
      const refused = (kind: string, agentId: string, n: number): void => {
        if (kind === 'pull_superseded' && agentId === ATTACKER) superseded += n;
      };
      core.on('pull', listener);
      core.on('refused', refused);
      const last = pullId + a.count;
      for (let id = pullId + 1; id <= last; id++) attacker.raw.client.publish(up, encodeCbor(['pull', { id, from: 0, limit: 10_000 }]));
      pullId = last;
      try {
        await waitFor('the newest pull answered', () => answered.has(last));
      } finally {
        core.off('pull', listener);
        core.off('refused', refused);
      }
      // Every pull was either answered or replaced by a newer one before it was: none built twice, none lost.
      expect(answered.size + superseded).toBe(a.count);
    } else if (a.kind === 'status') {
      const applied: Record<string, number> = { bulk: 5 };
      for (let i = 0; i < a.madeUp; i++) applied[`made-up-${i}`] = 1 + i;
      const list = Array.from({ length: a.fakeWaits }, (_, i) => [1 + i, 1_000_000 + i, `fake-${i % 7}`, 1000]);
      const at = Date.now();
      const held = core.replication.waitingFor(ATTACKER);
      await attacker.raw.publish(up, encodeCbor(['status', { applied, outbox: 0, waits: { inc: freshInc(), list } }]));
      await waitFor('the report taken', () => (core.replication.reports.get(ATTACKER)?.at ?? 0) >= at);
      expect(Object.keys(core.replication.appliedBy(ATTACKER)).filter((c) => c.startsWith('made-up-'))).toEqual([]);
      // Forged waits name LSNs the hub never handed out: none is held.
      expect(core.replication.waitingFor(ATTACKER)).toBe(held);
    } else if (a.kind === 'subscribe') {
      const names = Array.from({ length: a.topics }, (_, i) => topics.collection(`sub-${subscribed}-${i}`));
      // MQTT.js rejects a SUBSCRIBE with any topic refused; the SUBACK it carries says which.
      const grants = await attacker.raw.client.subscribeAsync(names, { qos: 1 }).then(
        (g) => g.map(({ qos }) => qos),
        (error: { packet?: { granted?: number[] } }) => error.packet?.granted ?? [],
      );
      expect(grants).toHaveLength(a.topics);
      // Granted while under the limit (its down topic counts), refused from then on.
      const room = Math.max(0, MAX_SUBSCRIPTIONS_PER_CLIENT - 1 - subscribed);
      expect(grants.filter((q) => q !== 128)).toHaveLength(Math.min(room, a.topics));
      subscribed += a.topics;
    } else if (a.kind === 'statusFlood') {
      const report = (outbox: number): Buffer => Buffer.from(encodeCbor(['status', { applied: { bulk: 5 }, outbox }]));
      for (let i = 0; i < a.count; i++) attacker.raw.client.publish(up, report(++reportNo));
      const newest = ++reportNo;
      await attacker.raw.publish(up, report(newest));
      // The newest is taken, however many came before it (the rest replaced within the budget).
      await waitFor('the newest report taken', () => core.replication.reports.get(ATTACKER)?.outbox === newest);
    } else {
      const ops: WireOp[] = Array.from({ length: a.ops }, () => ({ ...putOpFor(++seq), rep: 1000 }));
      const replies = await attacker.exchange(encodeCbor(['batch', { inc, ops }]));
      // Pages of an earlier flood may still be arriving; the batch itself gets one ack.
      expect(replies.map((r) => r[0]).filter((type) => type !== 'page' && type !== 'snapshot')).toEqual(['ack']);
    }
    expect(core.replication.waitingFor(ATTACKER)).toBeLessThanOrEqual(core.replication.limits.perAgent);
    expect(core.replication.waiting).toBeLessThanOrEqual(core.replication.limits.total);
  }

  it('keeps what it holds for the attacker within bounds, whatever the order of floods', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 6 }), async (actions) => {
        for (const a of actions) await perform(a);
      }),
      { numRuns: 8 },
    );
    expect(attacker.closed).toBe(false);
  });
});

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
  });
}

function putOpFor(n: number): WireOp {
  return { seq: n, c: 'fz', k: `w${n % 50}`, op: 'put', v: encodeCbor(n), hlc: nowHlc() };
}
