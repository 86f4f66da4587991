/**
 * One device of the fleet benchmark (bench/fleet.ts) without an agent or a database: an MQTT
 * connection made as the agent makes it (agent/link.ts: clean session, 30 s keepalive, its will
 * on its bye topic, its own down topic, the hub status and the collection it follows, and
 * reconnecting with the agent's backoff, agent/backoff.ts), logging in with its own token from
 * its own local address, and speaking the real protocol (shared/codec.ts): `hello` and `status`
 * on every connect, batches of writes whose acks it times, and pulls of the collection it
 * follows from its cursor until the hub says there is no more.
 *
 * A device advances its cursor only by pulling, never by the change sets it receives: it is a
 * device whose change sets were lost on the way, so that whatever was committed before the hub
 * restarted is caught up by pulling after it.
 */
import mqtt from 'mqtt';
import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { Backoff } from '../agent/backoff.js';
import { downCodec, upCodec } from '../shared/codec.js';
import type { HybridClock } from '../shared/hlc.js';
import type { AckMessage, UpMessage, WriteOp } from '../shared/messages.js';
import type { JsonValue } from '../shared/values.js';
import { byeTopic, topics } from '../shared/topics.js';
import { encodeValue } from '../shared/value-bytes.js';

/** What every device follows (fleet configuration), and where it writes (not followed). */
export const FOLLOWED = 'config';
export const WRITTEN = 'telemetry';

/** The agent's defaults: reconnect backoff (agent/agent.ts) and keepalive (agent/link.ts). */
const BACKOFF = { initialMs: 500, maxMs: 30_000 };
const KEEPALIVE_SECONDS = 30;

/** Every write op the devices send is built here: the value travels as its own CBOR bytes, as from an agent. */
export function writeOp(seq: number, collection: string, key: string, value: JsonValue, hlc: string): WriteOp {
  return { seq, c: collection, k: key, op: 'put', v: encodeValue(value), hlc };
}

export interface DeviceIdentity {
  id: string;
  token: string;
  /** The local address it connects from (a 127.0.0.0/8 address: many devices share one, as behind a NAT). */
  address: string;
}

export interface BrokerAddress {
  host: string;
  port: number;
}

export interface DeviceEvents {
  /** Logged in, subscribed, and its pull of the followed collection answered with no more to come. */
  resumed(device: Device): void;
  /** A connection attempt that did not log in, and why: its CONNACK code, a socket error, or closed before login. */
  refused(reason: string): void;
  /** A written op's outcome, and the time from its batch's publish to its ack. */
  acked(ms: number, committed: boolean): void;
  /** A message the benchmark does not expect (a resync, a snapshot, an error...). */
  unexpected(type: string): void;
}

export class Device {
  readonly #incarnation = randomBytes(16).toString('hex');
  readonly #backoff = new Backoff(BACKOFF);
  /** Seq of each op waiting for its ack → when its batch was published (ms). */
  readonly #sent = new Map<number, number>();
  /** Last seq of each batch someone waits for → its resolver (the LSN of that op). */
  readonly #batches = new Map<number, (lsn: number) => void>();
  #seq = 0;
  #cursor = 0;
  #pullId = 0;
  #client: mqtt.MqttClient | undefined;
  #subscribed = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  /** When it last resumed (Date.now()), 0 while it has not since it last lost its connection. */
  resumedAt = 0;
  /** Connection attempts since it was started. */
  attempts = 0;

  constructor(
    readonly identity: DeviceIdentity,
    private readonly broker: BrokerAddress,
    private readonly clock: HybridClock,
    private readonly events: DeviceEvents,
  ) {}

  /** How far it has pulled the followed collection. */
  get cursor(): number {
    return this.#cursor;
  }

  get connected(): boolean {
    return this.#subscribed;
  }

  start(): void {
    this.#stopped = false;
    this.#connect();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#client?.endAsync(true);
  }

  /**
   * Publishes one batch of writes to `collection`; resolves with the last op's LSN once acked.
   * Undefined (nothing sent) while not connected.
   */
  upload(collection: string, values: readonly JsonValue[]): Promise<number> | undefined {
    if (!this.#subscribed) return undefined;
    const ops = values.map((value) => {
      const seq = ++this.#seq;
      return writeOp(seq, collection, `${this.identity.id}-${seq}`, value, this.clock.tick());
    });
    const now = performance.now();
    for (const op of ops) this.#sent.set(op.seq, now);
    const acked = new Promise<number>((resolve) => this.#batches.set(this.#seq, resolve));
    this.#send(['batch', { inc: this.#incarnation, ops }]);
    return acked;
  }

  #send(message: UpMessage): void {
    this.#client?.publish(topics.up(this.identity.id), upCodec.encode(message), { qos: 1 });
  }

  #connect(): void {
    const { id, token, address } = this.identity;
    this.attempts += 1;
    const session = randomBytes(8).toString('hex');
    // mqtt.connect() does not pass `localAddress` to the socket; a stream of our own does.
    const client = new mqtt.MqttClient(() => createConnection({ host: this.broker.host, port: this.broker.port, localAddress: address }), {
      clientId: id,
      username: id,
      password: token,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: KEEPALIVE_SECONDS,
      protocolVersion: 4,
      resubscribe: false,
      will: { topic: byeTopic(id), payload: upCodec.encode(['bye', { s: session }]), qos: 1, retain: false },
    });
    this.#client = client;
    let loggedIn = false;
    let refusal: string | undefined;
    client.on('error', (error: Error & { code?: string | number }) => {
      refusal ??= typeof error.code === 'number' ? `CONNACK ${error.code}` : (error.code ?? error.message);
    });
    client.on('connect', () => {
      loggedIn = true;
      (client.stream as { setNoDelay?: (noDelay: boolean) => void }).setNoDelay?.(true);
      const filters = [topics.down(id), topics.hub, topics.collection(FOLLOWED)];
      client.subscribe(Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }])), (error, granted) => {
        if (this.#client !== client) return;
        if (error || !granted || granted.some((g) => g.qos === 128)) {
          this.events.unexpected('subscription refused');
          client.end(true);
          return;
        }
        this.#backoff.reset();
        this.#subscribed = true;
        this.#send(['hello', { s: session }]);
        this.#status();
        this.#pull();
      });
    });
    client.on('message', (topic, payload) => {
      if (topic === topics.down(id)) this.#onDown(payload);
    });
    client.on('close', () => {
      if (this.#client !== client) return;
      if (!loggedIn) this.events.refused(refusal ?? 'closed before login');
      this.#subscribed = false;
      this.#client = undefined;
      this.resumedAt = 0;
      client.removeAllListeners('connect');
      client.end(true);
      if (!this.#stopped) this.#timer = setTimeout(() => this.#connect(), this.#backoff.next());
    });
  }

  #status(): void {
    this.#send(['status', { applied: { [FOLLOWED]: this.#cursor }, outbox: this.#sent.size }]);
  }

  #pull(): void {
    this.#send(['pull', { id: ++this.#pullId, from: this.#cursor, cs: [FOLLOWED] }]);
  }

  #onDown(payload: Buffer): void {
    const message = downCodec.decode(payload);
    if (message[0] === 'ack') return this.#onAck(message[1]);
    if (message[0] !== 'page') return this.events.unexpected(message[0]);
    const page = message[1];
    if (page.id !== this.#pullId) return; // an answer to a pull of an earlier connection
    this.#cursor = Math.max(this.#cursor, page.to);
    if (page.more) return this.#pull();
    this.#status();
    this.resumedAt = Date.now();
    this.events.resumed(this);
  }

  #onAck(ack: AckMessage[1]): void {
    const now = performance.now();
    const settle = (seq: number, committed: boolean, lsn: number): void => {
      const sentAt = this.#sent.get(seq);
      if (sentAt === undefined) return;
      this.#sent.delete(seq);
      this.events.acked(now - sentAt, committed);
      const batch = this.#batches.get(seq);
      if (!batch) return;
      this.#batches.delete(seq);
      batch(lsn);
    };
    for (const [first, count, lsn] of ack.runs ?? []) for (let i = 0; i < count; i++) settle(first + i, true, lsn + i);
    for (const result of ack.results) settle(result.seq, result.outcome === 'committed', result.lsn ?? 0);
  }
}
