import { StorageFullError } from '../../shared/errors.js';
import { decodeHlc, encodeHlc, ZERO_HLC, type Hlc } from '../../shared/hlc.js';
import type { AgentDb } from './agent-db.js';
import type { NewWrite } from './writes.js';

/** How far ahead of the clock `Settings.reserveHlc` keeps the persisted timestamp. */
export const HLC_RESERVE_MS = 10_000;

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

  /**
   * A timestamp at or past every one this device has stamped a write with, so the clock never
   * runs backwards across restarts (a Pi without a real-time clock may boot with an old time).
   */
  get lastHlc(): Hlc {
    return (this.db.meta('hlc') ?? ZERO_HLC) as Hlc;
  }

  /**
   * Called with the clock after writes were stamped, in their transaction. Keeps `lastHlc` at or
   * past `clock` by reserving HLC_RESERVE_MS ahead whenever the clock passes what is kept, so a
   * sensor loop writes this row every few seconds rather than with every write (a page less to
   * the device's flash per write). The cost: a device restarted within that time stamps its
   * next writes up to that far ahead of its wall clock, well inside the hub's allowed skew.
   */
  reserveHlc(clock: Hlc): void {
    if (clock <= this.lastHlc) return;
    this.db.setMeta('hlc', encodeHlc(decodeHlc(clock).wall + HLC_RESERVE_MS, 0));
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

  /**
   * Throws StorageFullError if these writes would take the database past its budget (estimated,
   * before storing them). `unstored`: bytes the database may yet take for what it already holds
   * (the outbox's batches, compressed now, at their size as rows).
   */
  assertRoomFor(writes: readonly NewWrite[], unstored = 0): void {
    if (this.#storageLimit === undefined) return;
    const incoming = writes.reduce((sum, w) => sum + 64 + w.key.length + (w.value?.length ?? 0), 0);
    if (this.databaseBytes() + unstored + incoming > this.#storageLimit) throw new StorageFullError(this.db.path);
  }
}
