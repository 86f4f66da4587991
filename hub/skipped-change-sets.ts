import type { Client } from 'aedes';
import type { SendQueue } from './send-queue.js';

/**
 * Broadcast change sets not sent to a client whose send queue is backlogged (SendQueue). The
 * agent pulls what it missed when it sees a gap (`prev` above what it holds) in a collection's
 * change sets; a collection whose last change sets were skipped would show no gap until its next
 * commit, so once the client has caught up it is sent the newest skipped change set of each
 * such collection: applied if a pull already covered it, or the gap that starts one.
 */
export class SkippedChangeSets {
  /** Per client, per collection topic, the newest change set skipped. */
  readonly #owed = new WeakMap<Client, Map<string, Buffer>>();

  /** Whether to skip this change set for `client`; remembers it if so. */
  skip(client: Client, topic: string, payload: Buffer): boolean {
    const queue = (client.conn as { queue?: SendQueue }).queue;
    if (!queue?.backlogged) return false;
    let owed = this.#owed.get(client);
    if (!owed) {
      this.#owed.set(client, (owed = new Map<string, Buffer>()));
      queue.onceCaughtUp(() => this.#resend(client));
    }
    owed.set(topic, payload);
    return true;
  }

  #resend(client: Client): void {
    const owed = this.#owed.get(client);
    this.#owed.delete(client);
    if (!owed || client.closed) return;
    for (const [topic, payload] of owed) {
      // aedes calls the callback unconditionally: it must be given one.
      client.publish({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false }, () => undefined);
    }
  }
}
