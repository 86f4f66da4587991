import { StorageFullError } from '../../shared/errors.js';
import { ZERO_HLC, type Hlc } from '../../shared/hlc.js';
import type { AgentDb } from './agent-db.js';
import type { NewWrite } from './writes.js';

/**
 * Small values the agent keeps across restarts (the hub's policies and partition assignment,
 * leadership epochs heard, the clock), and the device's storage budget for app writes.
 */
export class Settings {
  #storageLimit: number | undefined;

  constructor(private readonly db: AgentDb) {}

  /** A small JSON value kept across restarts (e.g. the hub's collection policies). */
  get<T>(name: string): T | undefined {
    const text = this.db.meta(`setting:${name}`);
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  set(name: string, value: unknown): void {
    this.db.setMeta(`setting:${name}`, JSON.stringify(value));
  }

  /** The last HLC persisted, so the clock never runs backwards across restarts. */
  get lastHlc(): Hlc {
    return (this.db.meta('hlc') ?? ZERO_HLC) as Hlc;
  }

  /** Persists the clock (with the writes it stamped, in their transaction). */
  setLastHlc(hlc: Hlc): void {
    this.db.setMeta('hlc', hlc);
  }

  /**
   * The device's storage budget for app writes: a write that would take the database past
   * `bytes` fails with StorageFullError and stores nothing; what is queued stays. Replication
   * is not held to it — applying the hub's changes is what lets outbox rows go.
   */
  setStorageLimit(bytes: number | undefined): void {
    this.#storageLimit = bytes;
  }

  /** Bytes the database uses (pages in use, free pages not counted). */
  databaseBytes(): number {
    return this.db.databaseBytes();
  }

  /** Throws StorageFullError if these writes would take the database past its budget (estimated, before storing them). */
  assertRoomFor(writes: readonly NewWrite[]): void {
    if (this.#storageLimit === undefined) return;
    const incoming = writes.reduce((sum, w) => sum + 64 + w.key.length + (w.value?.length ?? 0), 0);
    if (this.databaseBytes() + incoming > this.#storageLimit) throw new StorageFullError(this.db.path);
  }
}
