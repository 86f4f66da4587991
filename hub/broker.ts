import { Aedes, type AuthenticateError } from 'aedes';
import type { Logger } from 'pino';
import { sourceOf } from './address-source.js';
import type { Authenticator } from './authenticator.js';
import { ConnectRateLimiter } from './rate-limit.js';
import type { GuardedConnection } from './frame-guard.js';
import type { ShedLog } from './shed.js';
import { SkippedChangeSets } from './skipped-change-sets.js';
import { agentOfBye, agentOfUpTopic, isValidAgentId } from '../shared/topics.js';
import { collectionOfAnyTopic, hashOfAnyBlobTopic, mayPublish, maySubscribe } from './topic-acl.js';

export interface BrokerOptions {
  /** Admit any well-formed agent id without credentials. Development only. */
  dev: boolean;
  /** Checks credentials outside development mode. */
  authenticator: Authenticator;
  /** Whether an agent may read a collection. */
  mayRead: (agentId: string, collection: string) => boolean;
  /** Connection attempts allowed per address and window. */
  connectLimit: { perAddress: number; windowMs: number };
  log: Logger;
  /** Where refused connection attempts are reported. */
  shedLog: ShedLog;
  /** Called for every message an agent publishes on its own `up` topic (`bye`: on its bye topic, its will). */
  onUp: (agentId: string, payload: Buffer, bye: boolean) => void;
  /** A change set was not sent to an agent whose send queue is backlogged (it pulls instead). */
  onChangeSetSkipped: (agentId: string) => void;
  /** Whether a device is fetching content `hash` now: the chunks published for it reach only those. */
  wantsBlob: (agentId: string, hash: string) => boolean;
}

/**
 * Subscriptions one connection may make. An agent holds a handful (its `down` topic, the hub's
 * status topics, `c/+` or one per collection it reads); each costs the broker memory for as
 * long as the client stays, so a client must not add them without end.
 */
export const MAX_SUBSCRIPTIONS_PER_CLIENT = 1_000;

/** MQTT CONNACK return codes (3.1.1). */
const IDENTIFIER_REJECTED = 2 as AuthenticateError['returnCode'];
const SERVER_UNAVAILABLE = 3 as AuthenticateError['returnCode'];
const BAD_USERNAME_OR_PASSWORD = 4 as AuthenticateError['returnCode'];
const NOT_AUTHORIZED = 5 as AuthenticateError['returnCode'];

/**
 * The embedded aedes broker with Outpost's deny-by-default ACL: an agent publishes only to its
 * own `up` topic and subscribes only to its own `down` topic, the hub status and collection
 * topics. Content is never judged here: a valid topic with a bad payload is answered on `down`
 * (closing the connection would make the agent resend the poison write forever).
 */
export async function createBroker(options: BrokerOptions): Promise<Aedes> {
  const { log } = options;
  const broker = await Aedes.createBroker({
    // One frozen subscriber must not stall delivery to everyone (aedes #1060).
    drainTimeout: 20_000,
    connectTimeout: 10_000,
    keepaliveLimit: 600,
    maxTopicLevels: 8,
    maxClientsIdLength: 128,
  });

  const limiter = new ConnectRateLimiter(options.connectLimit.perAddress, options.connectLimit.windowMs);
  broker.preConnect = (client, _packet, done) => {
    const address = (client.conn as { remoteAddress?: string }).remoteAddress ?? 'unknown';
    if (limiter.allow(sourceOf(address))) return done(null, true);
    options.shedLog.shed('connect_rate', { address });
    done(new Error(`too many connection attempts from ${address}`), false);
  };

  broker.authenticate = (client, username, password, rawDone) => {
    // Logged in: from now on its packets are held to the packet limit, not the CONNECT one; and
    // before the CONNACK, since a client may send on as soon as it has it (aedes emits `client`
    // later, after closing a previous connection of the same id).
    const done: typeof rawDone = (error, success) => {
      if (success) (client.conn as Partial<GuardedConnection>).admit?.(client.id);
      rawDone(error, success);
    };
    // aedes would keep a persistent session's subscriptions, and queue messages for it while it
    // is offline, in memory and forever (no session expiry without MQTT 5). Agents always
    // connect clean and pull what they missed.
    if (!client.clean) {
      const address = (client.conn as { remoteAddress?: string }).remoteAddress ?? 'unknown';
      options.shedLog.shed('persistent_session', { agentId: client.id, address });
      done(authError('persistent sessions (clean: false) are refused: connect with clean: true', NOT_AUTHORIZED), null);
      return;
    }
    if (!isValidAgentId(client.id)) {
      done(authError(`client id ${JSON.stringify(client.id)} is not a valid agent id`, IDENTIFIER_REJECTED), null);
      return;
    }
    if (options.dev) {
      done(null, true);
      return;
    }
    // Mutual TLS: a verified client certificate names the agent; no token needed.
    const certified = (client.conn as { peerCommonName?: string }).peerCommonName;
    if (certified !== undefined) {
      const provisioned = certified === client.id ? options.authenticator.stillValid(client.id) : Promise.resolve(false);
      provisioned.then(
        (ok) => {
          if (ok) {
            done(null, true);
            return;
          }
          log.warn(
            { agentId: client.id, certificate: certified },
            'refused agent: the certificate names another agent, or it is not provisioned',
          );
          done(authError('not authorized', NOT_AUTHORIZED), null);
        },
        (error: unknown) => {
          log.error({ err: error, agentId: client.id }, "could not check the agent's credential");
          done(authError('server unavailable', SERVER_UNAVAILABLE), null);
        },
      );
      return;
    }
    const address = (client.conn as { remoteAddress?: string }).remoteAddress ?? 'unknown';
    options.authenticator.check(client.id, username, password, address).then(
      (result) => {
        if (result === 'ok') return done(null, true);
        if (result === 'backoff' || result === 'busy') {
          // Nothing was checked: "server unavailable" makes an honest agent retry with its backoff.
          options.shedLog.shed(result === 'busy' ? 'auth_busy' : 'auth_backoff', { agentId: client.id, address }, result === 'backoff');
          return done(authError('server unavailable', SERVER_UNAVAILABLE), null);
        }
        log.warn({ agentId: client.id, address, reason: result }, 'refused agent');
        // An unknown id gets the same answer as a wrong token: ids cannot be enumerated. Only
        // whoever holds a revoked agent's token learns that it is revoked.
        if (result === 'revoked') done(authError('not authorized', NOT_AUTHORIZED), null);
        else done(authError('bad username or password', BAD_USERNAME_OR_PASSWORD), null);
      },
      (error: unknown) => {
        log.error({ err: error, agentId: client.id }, 'credential check failed');
        done(authError('server unavailable', SERVER_UNAVAILABLE), null);
      },
    );
  };

  broker.authorizePublish = (client, packet, done) => {
    if (client === null) return done(null); // the hub's own publishes
    if (mayPublish(client.id, packet.topic, packet.retain)) return done(null);
    log.warn({ agentId: client.id, topic: packet.topic }, 'forbidden publish; closing the connection');
    done(new Error(`agent ${client.id} may not publish to ${packet.topic}`));
  };

  const subscribeAccess = { mayRead: options.mayRead, mayReadAll: () => false };
  // The topics each connection was ever allowed, counted as they are allowed (aedes asks about
  // every topic of a SUBSCRIBE before it adds any, so its own list would miss a packet's own);
  // an unsubscribe does not give one back, so cycling through topics does not escape the limit.
  const allowed = new WeakMap<object, Set<string>>();
  broker.authorizeSubscribe = (client, subscription, done) => {
    // `+` is allowed: authorizeForward below drops each change set the agent may not read.
    if (!maySubscribe(client.id, subscription.topic, subscribeAccess, true)) {
      options.shedLog.shed('forbidden_subscription', { agentId: client.id, topic: subscription.topic });
      return done(null, null);
    }
    let topics = allowed.get(client);
    if (!topics) allowed.set(client, (topics = new Set()));
    if (!topics.has(subscription.topic) && topics.size >= MAX_SUBSCRIPTIONS_PER_CLIENT) {
      options.shedLog.shed('subscriptions', { agentId: client.id, limit: MAX_SUBSCRIPTIONS_PER_CLIENT });
      return done(null, null);
    }
    topics.add(subscription.topic);
    done(null, subscription);
  };

  // A change set reaches only the agents that may read its collection (the `+` subscription
  // matches them all; this is where the ACL applies), and not those too far behind to take it
  // now: they pull it. Messages on an agent's own `down` topic (acks, pages) always go.
  const skipped = new SkippedChangeSets();
  broker.authorizeForward = (client, packet) => {
    const hash = hashOfAnyBlobTopic(packet.topic);
    if (hash !== undefined) return options.wantsBlob(client.id, hash) ? packet : null;
    const collection = collectionOfAnyTopic(packet.topic);
    if (collection === undefined) return packet;
    if (!options.mayRead(client.id, collection)) return null;
    if (!skipped.skip(client, packet.topic, packet.payload as Buffer)) return packet;
    options.onChangeSetSkipped(client.id);
    return null;
  };

  broker.on('publish', (packet, client) => {
    if (client && agentOfUpTopic(packet.topic) === client.id) options.onUp(client.id, packet.payload as Buffer, false);
    else if (client && agentOfBye(packet.topic) === client.id) options.onUp(client.id, packet.payload as Buffer, true);
  });
  broker.on('clientError', (client, error) => log.debug({ agentId: client.id, err: error.message }, 'client error'));
  broker.on('connectionError', (_client, error) => log.debug({ err: error.message }, 'connection error'));
  return broker;
}

function authError(message: string, returnCode: AuthenticateError['returnCode']): AuthenticateError {
  return Object.assign(new Error(message), { returnCode });
}
