import type { CollectionPolicy, HubStatusMessage } from '../shared/messages.js';
import type { Settings } from './store/settings.js';

/** Until the hub has said otherwise: the hub's own defaults. */
const DEFAULT_POLICY: CollectionPolicy = {
  conflict: 'lww',
  durability: 'local',
  priority: 'normal',
  ttlSeconds: 0,
  maxPending: 0,
  overflow: 'reject',
};
const SETTING = 'hub-policies';

/**
 * The collection policies from the hub's retained status, kept in the agent's database so that
 * they hold offline and across restarts.
 */
export class PolicyCache {
  #policies: HubStatusMessage[1] | undefined;

  constructor(private readonly settings: Settings) {
    this.#policies = settings.get<HubStatusMessage[1]>(SETTING);
  }

  get(collection: string): CollectionPolicy {
    return this.#policies?.collections[collection] ?? this.#policies?.defaults ?? DEFAULT_POLICY;
  }

  /** The collections declared high priority (alarms): they spend even when the transfer budget is spent. */
  highPriority(): ReadonlySet<string> {
    const collections = this.#policies?.collections ?? {};
    return new Set(Object.keys(collections).filter((c) => collections[c]!.priority === 'high'));
  }

  update(status: HubStatusMessage[1]): void {
    this.#policies = status;
    this.settings.set(SETTING, status);
  }
}
