import type { Socket } from 'node:net';
import { expect } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import type { SqliteHubDb } from '../../hub/store/sqlite-db.js';
import { ErrorCode } from '../../shared/errors.js';
import type { Change, DownMessage } from '../../shared/messages.js';
import type { JsonValue } from '../../shared/values.js';
import { topics } from '../../shared/topics.js';
import type { TestFleet } from '../helpers/fleet.js';
import { RawClient } from '../helpers/raw-client.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { batchBytes, putOp } from './craft.js';

/**
 * Records uncaught exceptions and unhandled rejections while installed. The hub runs in this
 * process, so anything it fails to handle lands here; tests assert the list stays empty.
 * (While a listener of ours is installed Vitest leaves these errors to us.)
 */
export class ProcessGuard {
  readonly #errors: unknown[] = [];
  readonly #record = (error: unknown): void => {
    this.#errors.push(error);
  };

  install(): void {
    process.on('uncaughtException', this.#record);
    process.on('unhandledRejection', this.#record);
  }

  uninstall(): void {
    process.off('uncaughtException', this.#record);
    process.off('unhandledRejection', this.#record);
  }

  get count(): number {
    return this.#errors.length;
  }

  /** The errors recorded since the last call, as strings. */
  take(): string[] {
    return this.#errors.splice(0).map((e) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e)));
  }
}

/**
 * The sentinel: a batch that skips ahead on an incarnation that never commits, so the hub
 * always answers it with a resync. Replies to one connection come in order, so once the
 * sentinel's resync is in, every reply to what was sent before it is in too.
 */
const SENTINEL_INC = 'e'.repeat(32);
const SENTINEL = batchBytes(SENTINEL_INC, [putOp(2, 'sentinel', 's', 0)]);
const isSentinel = (m: DownMessage): boolean => m[0] === 'resync' && m[1].inc === SENTINEL_INC;
const isCommitFailure = (m: DownMessage): boolean => m[0] === 'error' && m[1].code === ErrorCode.STORAGE_FAILED;

/** A raw MQTT client that sends what no honest agent would, on its own `up` topic. */
export class Attacker {
  private constructor(readonly raw: RawClient) {}

  static async connect(port: number, id: string): Promise<Attacker> {
    const raw = await RawClient.connect(port, id);
    // Round trips, not bytes, bound the fuzzing rate: do not let Nagle hold our packets back.
    (raw.client.stream as Socket).setNoDelay?.(true);
    return new Attacker(raw);
  }

  get id(): string {
    return this.raw.id;
  }

  get closed(): boolean {
    return this.raw.closed;
  }

  /** Publishes each payload, in order, on the attacker's own up topic; returns every reply. */
  async exchange(...payloads: Uint8Array[]): Promise<DownMessage[]> {
    const { received } = this.raw;
    received.length = 0;
    const up = topics.up(this.id);
    // Same QoS for all, published back to back: the hub handles them in order.
    await Promise.all([...payloads.map((p) => this.raw.publish(up, p)), this.raw.publish(up, SENTINEL)]);
    // A failed group commit swallows the sentinel too: stop at once, and say why.
    await waitFor('the sentinel resync', () => received.some(isSentinel) || received.some(isCommitFailure), 5_000);
    const failure = received.find(isCommitFailure);
    if (failure) throw new Error(`the hub failed a commit: ${JSON.stringify(failure)}`);
    const replies = received.slice(0, received.findIndex(isSentinel));
    received.length = 0;
    return replies;
  }

  /** For messages that each get exactly one reply: the replies, in order. */
  async replies(payloads: Uint8Array[]): Promise<DownMessage[]> {
    const replies = await this.exchange(...payloads);
    expect(replies, 'one reply per message').toHaveLength(payloads.length);
    return replies;
  }

  async reply(payload: Uint8Array): Promise<DownMessage> {
    return (await this.replies([payload]))[0]!;
  }

  async end(): Promise<void> {
    await this.raw.end();
  }
}

/** Every change committed after `since` with origin `origin`. */
export function commitsBy(db: SqliteHubDb, origin: string, since = 0): Change[] {
  return db.readLog(since, undefined, 1_000_000, Number.MAX_SAFE_INTEGER).changes.filter((c) => c.o === origin);
}

/**
 * An honest agent writing in the background while a test attacks the hub. `stopAndVerify`
 * proves every write reached the hub under the agent's own id, was never rejected, and that a
 * hub-durable write comes back to the agent's confirmed replica.
 */
export class HonestWorkload {
  readonly #written: Array<{ key: string; value: JsonValue }> = [];
  #loop: Promise<void> | undefined;
  #failure: Error | undefined;
  #stopping = false;
  #n = 0;

  constructor(
    readonly fleet: TestFleet,
    readonly agent: Agent,
    readonly collection = 'honest',
  ) {}

  start(): void {
    this.#stopping = false;
    this.#loop = this.#run().catch((error: unknown) => {
      this.#failure = error instanceof Error ? error : new Error(String(error));
    });
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      const key = `bg-${++this.#n}`;
      const value = { n: this.#n, note: 'written while under attack' };
      await this.agent.put(this.collection, key, value);
      this.#written.push({ key, value });
      await sleep(20);
    }
  }

  async stopAndVerify(): Promise<void> {
    this.#stopping = true;
    await this.#loop;
    if (this.#failure) throw this.#failure;
    const store = this.fleet.hub!.store;
    for (const { key, value } of this.#written.splice(0)) {
      const doc = await waitFor(`the hub to hold honest write ${key}`, () => store.document(this.collection, key));
      expect(doc).toMatchObject({ value, origin: this.agent.id, deleted: false });
    }
    const key = `rt-${++this.#n}`;
    const value = { n: this.#n, roundTrip: true };
    const receipt = await this.agent.put(this.collection, key, value, { durability: 'hub', timeoutMs: 10_000 });
    expect(receipt.lsn).toBeGreaterThan(0);
    expect(await store.document(this.collection, key)).toMatchObject({ value, origin: this.agent.id, version: receipt.lsn });
    const back = await this.agent.get(this.collection, key, { confirmed: true, minLsn: receipt.lsn, timeoutMs: 10_000 });
    expect(back).toMatchObject({ value, version: receipt.lsn, pending: false });
    expect(this.agent.rejections()).toEqual([]);
  }
}
