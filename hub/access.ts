import type { HubConfig } from './config.js';

/**
 * Which agent may read and write which collection, from the hub config's `access` section.
 * Deny by default: only what is granted is allowed. In development mode everything is.
 */
export class AccessControl {
  constructor(
    private readonly access: HubConfig['access'],
    private readonly dev: boolean,
  ) {}

  mayRead(agentId: string, collection: string): boolean {
    return this.#granted(agentId, this.access.collections[collection]?.read ?? this.access.default.read);
  }

  mayWrite(agentId: string, collection: string): boolean {
    return this.#granted(agentId, this.access.collections[collection]?.write ?? this.access.default.write);
  }

  /** Whether the default grants the agent reading (every collection the section does not list). */
  mayReadUnlisted(agentId: string): boolean {
    return this.#granted(agentId, this.access.default.read);
  }

  /** The collections the section lists, each with its own grants. */
  get listedCollections(): string[] {
    return Object.keys(this.access.collections);
  }

  /**
   * Whether the agent may read every collection, declared or not: the default grants it and no
   * listed collection takes it away. (A broker that cannot filter deliveries needs this for `+`.)
   */
  mayReadAll(agentId: string): boolean {
    return (
      this.mayReadUnlisted(agentId) &&
      Object.values(this.access.collections).every((c) => c.read === undefined || this.#granted(agentId, c.read))
    );
  }

  /** Nothing is granted to anyone: the hub says so at start. */
  get grantsNothing(): boolean {
    const lists = [
      this.access.default.read,
      this.access.default.write,
      ...Object.values(this.access.collections).flatMap((c) => [c.read ?? [], c.write ?? []]),
    ];
    return !this.dev && lists.every((l) => l.length === 0);
  }

  #granted(agentId: string, subjects: readonly string[]): boolean {
    if (this.dev) return true;
    return subjects.some(
      (s) => s === '*' || s === agentId || (s.startsWith('group:') && (this.access.groups[s.slice(6)] ?? []).includes(agentId)),
    );
  }
}
