import type { PullMessage } from '../shared/messages.js';

/**
 * At most one pull per agent is answered at a time, and at most one waits behind it: a newer
 * pull replaces the waiting one. An agent has one pull outstanding (it asks again only after a
 * timeout or a page), so this costs a device nothing; a client flooding pulls gets one answer
 * per answer it could use, instead of a page built (up to half a message's size) for each.
 */
export class PullQueue {
  /** Agents with a pull being answered, and the pull waiting behind it, if any. */
  readonly #agents = new Map<string, { next: PullMessage[1] | undefined }>();
  constructor(
    private readonly answer: (agentId: string, pull: PullMessage[1]) => Promise<void>,
    /** A pull was replaced before it was answered. */
    private readonly superseded: (agentId: string) => void,
  ) {}

  submit(agentId: string, pull: PullMessage[1]): void {
    const busy = this.#agents.get(agentId);
    if (busy) {
      if (busy.next) this.superseded(agentId);
      busy.next = pull;
      return;
    }
    const state = { next: undefined as PullMessage[1] | undefined };
    this.#agents.set(agentId, state);
    void this.#drain(agentId, pull, state);
  }

  async #drain(agentId: string, first: PullMessage[1], state: { next: PullMessage[1] | undefined }): Promise<void> {
    let pull: PullMessage[1] | undefined = first;
    try {
      while (pull) {
        await this.answer(agentId, pull);
        pull = state.next;
        state.next = undefined;
      }
    } finally {
      this.#agents.delete(agentId);
    }
  }
}
