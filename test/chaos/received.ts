import mqttPacket from 'mqtt-packet';
import { broadcastCodec, downCodec } from '../../shared/codec.js';
import { decodeValue } from '../../shared/value-bytes.js';
import type { Change } from '../../shared/messages.js';
import type { DownstreamTap } from './fault-proxy.js';
import type { History, ReceivedChange } from './history.js';
import { isScoped } from './scope-plan.js';

/**
 * Records a message that reached an agent's credentials, if it concerns scoped collections: a
 * scope, or anything carrying a change of one, whatever its topic (a scoped change on a
 * collection topic, or in a page of the unscoped log, would be a leak as much as one on another
 * device's topic). Decoded with the protocol's own codecs; what fails to decode is recorded as a
 * problem, since it reached the device all the same.
 */
export function recordReceived(history: History, agentId: string, via: 'link' | 'spy', topic: string, payload: Buffer): number {
  if (!topic.endsWith('/down') && !/\/c\/[^/]+$/.test(topic)) return 0; // the hub's retained status
  let message;
  try {
    message = topic.endsWith('/down') ? downCodec.decode(payload) : broadcastCodec.decode(payload);
  } catch (error) {
    history.received.push({ agentId, via, topic, kind: 'undecodable', changes: [], problem: String(error) });
    return 0;
  }
  const [kind, body] = message as [string, Record<string, unknown>];
  if (kind === 'scope') {
    const told = (body.bs as [string, number][]).map(([b]) => b);
    history.received.push({ agentId, via, topic, kind, changes: [], told });
    return 0;
  }
  const carried = (kind === 'snapshot' ? body.docs : body.changes) as Change[] | undefined;
  if (!Array.isArray(carried)) return 0;
  let changes: ReceivedChange[];
  try {
    // Values travel as their bytes: decoded here, as the device would read them.
    changes = carried
      .filter((ch) => isScoped(ch.c))
      .map((ch) => ({ c: ch.c, k: ch.k, op: ch.op, ...(ch.v !== undefined && { v: decodeValue(ch.v) }) }));
  } catch (error) {
    history.received.push({ agentId, via, topic, kind: 'undecodable', changes: [], problem: `a value: ${String(error)}` });
    return 0;
  }
  const bucket = typeof body.b === 'string' ? body.b : undefined;
  if (changes.length === 0 && bucket === undefined) return 0;
  history.received.push({ agentId, via, topic, kind, ...(bucket !== undefined && { bucket }), changes });
  return changes.length;
}

/**
 * A tap for one of an agent's connections through its fault proxy: parses the MQTT stream the
 * broker sent down it (MQTT 3.1.1, as agents speak) and records every PUBLISH it carried. The
 * agent itself drops change sets of buckets it does not hold, so what it applied would not show
 * a hub that sends too much; its link does.
 */
export function linkTap(history: History, agentId: string): DownstreamTap {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  parser.on('packet', (packet) => {
    if (packet.cmd === 'publish') recordReceived(history, agentId, 'link', packet.topic, Buffer.from(packet.payload));
  });
  parser.on('error', (error: Error) =>
    history.received.push({ agentId, via: 'link', topic: '', kind: 'unparsable', changes: [], problem: error.message }),
  );
  return (chunk) => parser.parse(chunk);
}
