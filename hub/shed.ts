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
};

/**
 * Where every decision to shed a client goes: one warning in the log, and an event the metrics
 * count. The hub under attack degrades in one direction only: the attacker is shed, and this is
 * how an operator sees it.
 */
export class ShedLog extends EventEmitter<{ shed: [reason: ShedReason] }> {
  constructor(private readonly log: Logger) {
    super();
  }

  /** Counts the shed client; logs it at warn, or at debug when `quiet` (a refusal repeated many times a second). */
  shed(reason: ShedReason, facts: Record<string, unknown>, quiet = false): void {
    this.log[quiet ? 'debug' : 'warn']({ shed: reason, ...facts }, MESSAGES[reason]);
    this.emit('shed', reason);
  }
}
