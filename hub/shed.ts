import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';

/**
 * Why the hub dropped, refused or rate-limited a client to protect everyone else. Each is a
 * label of `outpost_hub_clients_shed_total` and is explained in docs/SECURITY.md.
 */
export const SHED_REASONS = [
  /** The first packet (CONNECT), or any packet before login, announced more than maxConnectBytes. */
  'connect_too_large',
  /** The first packet of a connection was not a CONNECT. */
  'not_connect',
  /** A packet after login announced more than the packet limit. */
  'packet_too_large',
  /**
   * A client that does not read: more than maxQueuedBytes waited to be written to it with nothing
   * sent on for a few seconds, or more than four times it.
   */
  'slow_consumer',
  /** Too many connection attempts from one address (connectsPerAddress). */
  'connect_rate',
  /** A login from an address still backing off after failed logins; refused without checking. */
  'auth_backoff',
  /** Too many logins waiting for a token check; refused at once, the client retries later. */
  'auth_busy',
  /** A CONNECT asking for a persistent session (clean: false): the broker would hold it in memory forever. */
  'persistent_session',
  /**
   * Too many connections waiting to log in, in all or from one address (maxPendingLogins,
   * maxPendingLoginsPerAddress): closed at accept.
   */
  'pending_logins',
  /** A client sent more than maxInboundBytesPerSecond: its socket is not read for a while (slowed, not dropped). */
  'inbound_rate',
  /** A subscription past the most one client may hold (MAX_SUBSCRIPTIONS_PER_CLIENT): refused, the client stays. */
  'subscriptions',
  /** A subscription to a topic the client may not read: refused (SUBACK 0x80), the client stays. */
  'forbidden_subscription',
] as const;

export type ShedReason = (typeof SHED_REASONS)[number];

/** What the log says for each. */
const MESSAGES: Record<ShedReason, string> = {
  connect_too_large: 'closed a connection whose packet before login was over maxConnectBytes',
  not_connect: 'closed a connection whose first packet was not a CONNECT',
  packet_too_large: 'closed a connection that sent a packet over the size limit',
  slow_consumer: 'closed a connection that does not read what is sent to it (over maxQueuedBytes without progress, or four times it)',
  connect_rate: 'too many connection attempts from this address; refused',
  auth_backoff: 'login refused without a check: this address is backing off after failed logins',
  auth_busy: 'login refused: too many token checks waiting; the client retries later',
  persistent_session: 'login refused: persistent sessions (clean: false) are not kept; agents connect with clean: true',
  pending_logins: 'closed a new connection: too many connections waiting to log in, in all or from this address',
  inbound_rate: 'a client sent more than maxInboundBytesPerSecond; its socket is not read until its budget refills',
  subscriptions: 'refused a subscription: the client holds as many as one client may',
  forbidden_subscription: 'refused a subscription to a topic the client may not read',
};

/** At most one warning per reason in this long; the rest go to the debug log, and the next warning counts them. */
const WARN_EVERY_MS = 10_000;

/**
 * Where every decision to shed a client goes: one warning in the log, and an event the metrics
 * count. The hub under attack degrades in one direction only: the attacker is shed, and this is
 * how an operator sees it.
 */
export class ShedLog extends EventEmitter<{ shed: [reason: ShedReason] }> {
  readonly #warned = new Map<ShedReason, { at: number; since: number }>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super();
  }

  /**
   * Counts the shed client; logs it at warn, at most once per reason every 10 s (an attack must
   * not flood the log too), else at debug; always at debug when `quiet` (a refusal an honest
   * client also meets, repeated many times a second).
   */
  shed(reason: ShedReason, facts: Record<string, unknown>, quiet = false): void {
    this.emit('shed', reason);
    const now = this.now();
    const last = this.#warned.get(reason);
    if (quiet || (last && now - last.at < WARN_EVERY_MS)) {
      if (last && !quiet) last.since += 1;
      this.log.debug({ shed: reason, ...facts }, MESSAGES[reason]);
      return;
    }
    this.log.warn({ shed: reason, ...facts, ...(last && last.since > 0 && { alsoSince: last.since }) }, MESSAGES[reason]);
    this.#warned.set(reason, { at: now, since: 0 });
  }
}
