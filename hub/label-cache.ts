import type { Logger } from 'pino';
import { noLabels, type Labels } from './labels.js';
import type { HubStore } from './store/hub-store.js';

/** How often the hub looks for label changes made by another process (as often as for credentials). */
export const LABEL_CHECK_MS = 500;

const NONE: Labels = Object.freeze(noLabels());

/**
 * Every agent's labels, held in memory so that they can be read synchronously (a device's scope
 * is computed from them on every connect): loaded at start, and reloaded whenever the registry's
 * labels version moves, which it does when `outpost hub agents label` writes from another
 * process. After a reload that changed anything, `onChange` is told which agents' labels differ;
 * by then the cache holds their new labels.
 */
export class LabelCache {
  readonly #registry: Pick<HubStore, 'allLabels' | 'labelsVersion'>;
  readonly #onChange: (agentIds: string[]) => void;
  readonly #log: Logger;
  readonly #everyMs: number;
  #labels: ReadonlyMap<string, Labels> = new Map();
  /** The version the cache holds; undefined before the first load. */
  #version: number | undefined;
  #checking: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    registry: Pick<HubStore, 'allLabels' | 'labelsVersion'>,
    onChange: (agentIds: string[]) => void,
    log: Logger,
    everyMs = LABEL_CHECK_MS,
  ) {
    this.#registry = registry;
    this.#onChange = onChange;
    this.#log = log;
    this.#everyMs = everyMs;
  }

  /** Loads every agent's labels (a failure is thrown: the hub cannot start without them), then watches for changes. */
  async start(): Promise<void> {
    await this.check();
    this.#timer = setInterval(() => {
      this.check().catch((error: unknown) => this.#log.warn({ err: error }, 'could not check for label changes; trying again'));
    }, this.#everyMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** An agent's labels, names in order; none: an empty object. Frozen: the cache's own copy. */
  of(agentId: string): Labels {
    return this.#labels.get(agentId) ?? NONE;
  }

  /** Every agent that has labels, with them. */
  get all(): ReadonlyMap<string, Labels> {
    return this.#labels;
  }

  /**
   * Reloads the labels if their version moved since the last load. One check runs at a time: a
   * call while one runs gets that one. The version is read before the labels, so a change
   * committed between the two is loaded again by the next check, never missed.
   */
  check(): Promise<void> {
    this.#checking ??= this.#check().finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  async #check(): Promise<void> {
    const version = await this.#registry.labelsVersion();
    if (version === this.#version) return;
    const loaded = await this.#registry.allLabels();
    const next = new Map<string, Labels>([...loaded].map(([agentId, labels]) => [agentId, Object.freeze(labels)]));
    const first = this.#version === undefined;
    const changed = first ? [] : differing(this.#labels, next);
    this.#labels = next;
    this.#version = version;
    if (changed.length > 0) this.#onChange(changed);
  }
}

/** The agents whose labels differ between two loads, in order (labels come with their names in order). */
function differing(before: ReadonlyMap<string, Labels>, after: ReadonlyMap<string, Labels>): string[] {
  const ids = new Set([...before.keys(), ...after.keys()]);
  return [...ids].filter((id) => JSON.stringify(before.get(id) ?? {}) !== JSON.stringify(after.get(id) ?? {})).sort();
}
