import type { HubConfig } from './config.js';

/**
 * Which agent may read and write which collection, from the hub config's `access` section.
 * Deny by default: only what is granted is allowed. In development mode everything is.
 */
export class AccessControl {
  constructor(private readonly access: HubConfig['access'], private readonly dev: boolean) {}

  mayRead(agentId: string, collection: string): boolean {
    return this.#granted(agentId, this.access.collections[collection]?.read ?? this.access.default.read);
  }

  mayWrite(agentId: string, collection: string): boolean {
    return this.#granted(agentId, this.access.collections[collection]?.write ?? this.access.default.write);
  }

  /** Nothing is granted to anyone: the hub says so at start. */
  get grantsNothing(): boolean {
    const lists = [this.access.default.read, this.access.default.write, ...Object.values(this.access.collections).flatMap((c) => [c.read ?? [], c.write ?? []])];
    return !this.dev && lists.every((l) => l.length === 0);
  }

  #granted(agentId: string, subjects: readonly string[]): boolean {
    if (this.dev) return true;
    return subjects.some((s) => s === '*' || s === agentId || (s.startsWith('group:') && (this.access.groups[s.slice(6)] ?? []).includes(agentId)));
  }
}
