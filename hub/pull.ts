import type { HybridClock } from '../shared/hlc.js';
import type { PageMessage, PullMessage } from '../shared/messages.js';
import type { SqliteHubStore } from './store/sqlite-store.js';

export const DEFAULT_PAGE_LIMIT = 500;

/**
 * Answers a pull with one page of the log after `from`. A page is complete up to `to`: once
 * the agent has applied it, every change of the requested collections up to `to` is seen, and
 * while `more` is set it asks for the next page from `to`.
 */
export function answerPull(store: SqliteHubStore, clock: HybridClock, pull: PullMessage[1], maxBytes: number): PageMessage {
  const head = store.head;
  const { changes, complete } = store.readLog(pull.from, pull.cs, pull.limit ?? DEFAULT_PAGE_LIMIT, maxBytes);
  const to = complete ? Math.max(head, pull.from) : changes.at(-1)!.lsn;
  return ['page', { from: pull.from, to, more: !complete, hlc: clock.tick(), changes }];
}
