/**
 * Worker for the scoped fan-out benchmark: lightweight devices, plain MQTT.js clients with no
 * agent and no database behind them. Forked before anything is measured, it connects devices
 * when told (`connect`), a group at a time: each connects as `dev-N`, subscribes to its own
 * down topic and says hello, which makes it online for its scope at the hub, and counts once the
 * hub has told it its scope; the worker answers `ready` when every device asked for does. From
 * then on it records the LSN of every change it receives, so the benchmark can
 * check that each change reached its own device and no other. They never pull: nothing is
 * written to them before they are online.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { downCodec, upCodec } from '../shared/codec.js';
import { topics } from '../shared/topics.js';

export type ToDevices =
  /** Connects `dev-<first>` to `dev-<first + count - 1>`, `rampGroup` at once; the next group starts when this one has its scope. */
  | { kind: 'connect'; hubUrl: string; first: number; count: number; rampGroup: number }
  | { kind: 'report' }
  | { kind: 'reset' }
  | { kind: 'close' };
export type FromDevices =
  | { kind: 'started' }
  | { kind: 'ready'; openFds: number }
  /** Per device that received any: the LSNs of the changes it received since the last reset. */
  | { kind: 'report'; received: Array<[string, number[]]> };

/**
 * Far above the benchmark's length, and the most the hub allows (hub/broker.ts): the pings of
 * 10,000 devices are a cost of being connected, not of a change, and would blur the figure.
 */
const KEEPALIVE_SECONDS = 600;

const send = (message: FromDevices): void => {
  process.send!(message);
};

const received = new Map<string, number[]>();
const clients: MqttClient[] = [];

/** Connects one device; resolves once the hub has sent it its scope. */
function device(hubUrl: string, agentId: string): Promise<void> {
  const down = topics.down(agentId);
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(hubUrl, { clientId: agentId, keepalive: KEEPALIVE_SECONDS, reconnectPeriod: 0, clean: true });
    clients.push(client);
    let scoped = false;
    client.on('error', (error) => {
      // Before its scope came, the device tries again (an agent would): on a loaded machine the hub
      // may shed a connection while thousands log in. After it, an error settles nothing: the
      // check of deliveries tells.
      if (scoped) return;
      client.end(true);
      reject(error);
    });
    client.once('connect', () =>
      client.subscribe(down, { qos: 1 }, (error) => {
        if (error) return reject(error);
        // As an agent does once it listens: the hub then tells it its scope.
        client.publish(topics.up(agentId), upCodec.encode(['hello', { s: randomBytes(8).toString('hex') }]), { qos: 1 });
      }),
    );
    client.on('message', (topic, payload) => {
      if (topic !== down) return;
      const message = downCodec.decode(payload);
      if (message[0] === 'scope') {
        scoped = true;
        resolve();
      }
      if (message[0] !== 'changes') return;
      const lsns = received.get(agentId) ?? [];
      for (const change of message[1].changes) lsns.push(change.lsn);
      received.set(agentId, lsns);
    });
  });
}

const CONNECT_ATTEMPTS = 5;

async function deviceWithRetries(hubUrl: string, agentId: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await device(hubUrl, agentId);
    } catch (error) {
      if (attempt === CONNECT_ATTEMPTS) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  }
}

async function connect({ hubUrl, first, count, rampGroup }: Extract<ToDevices, { kind: 'connect' }>): Promise<void> {
  for (let from = 0; from < count; from += rampGroup) {
    const group = Math.min(rampGroup, count - from);
    await Promise.all(Array.from({ length: group }, (_, j) => deviceWithRetries(hubUrl, `dev-${first + from + j}`)));
  }
  send({ kind: 'ready', openFds: readdirSync('/proc/self/fd').length });
}

process.on('message', (message: ToDevices) => {
  if (message.kind === 'connect') void connect(message);
  else if (message.kind === 'report') send({ kind: 'report', received: [...received] });
  else if (message.kind === 'reset') received.clear();
  else void Promise.all(clients.map((client) => client.endAsync(true))).then(() => process.exit(0));
});
send({ kind: 'started' });
