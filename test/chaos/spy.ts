import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { upCodec } from '../../shared/codec.js';
import { byeTopic, topics } from '../../shared/topics.js';
import { sleep } from '../helpers/wait.js';
import type { History } from './history.js';
import { recordReceived } from './received.js';

/**
 * Listens as a device, with its credentials, while the device itself is down (the embedded
 * broker admits a connection only under the client id its username names, and a second
 * connection under that id would throw the device off): subscribes to every wildcard and to
 * the other devices' topics (the broker grants what the device may read and refuses the rest),
 * says `hello` as a device does once it listens, so that the hub sends it the device's buckets,
 * and records everything of scoped collections that comes, for the checker. Says `bye` before it
 * goes, as a device does.
 */
export async function spyAs(
  history: History,
  url: string,
  agentId: string,
  token: string,
  others: readonly string[],
  listenMs: number,
  /** Called once the spy listens: what the hub then writes into the device's scope, the spy must hear. */
  whileListening: () => Promise<void> = async () => undefined,
): Promise<number> {
  const spy = await mqtt.connectAsync(url, {
    clientId: agentId,
    username: agentId,
    password: token,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
  let heard = 0;
  let toldScope: () => void = () => undefined;
  const told = new Promise<void>((resolve) => (toldScope = resolve));
  spy.on('message', (topic, payload) => {
    const before = history.received.length;
    heard += recordReceived(history, agentId, 'spy', topic, payload);
    if (history.received.length > before && history.received.at(-1)!.kind === 'scope') toldScope();
  });
  try {
    const filters = ['#', 'outpost/#', `${topics.root}/#`, topics.allCollections, `${topics.root}/a/+/down`, ...others.map(topics.down)];
    for (const filter of [...filters, topics.down(agentId)]) await spy.subscribeAsync(filter, { qos: 1 }).catch(() => undefined);
    const session = randomBytes(8).toString('hex');
    await spy.publishAsync(topics.up(agentId), upCodec.encode(['hello', { s: session }]), { qos: 1 });
    // The hub tells the scope once it has the spy down as holding its buckets: only then does
    // what it writes into them reach it live (the spy pulls nothing).
    await Promise.race([told, sleep(listenMs)]);
    await Promise.all([sleep(listenMs), whileListening()]);
    await spy.publishAsync(byeTopic(agentId), upCodec.encode(['bye', { s: session }]), { qos: 1 });
  } finally {
    await spy.endAsync(true);
  }
  return heard;
}
