import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Logger } from 'pino';
import { DEFAULT_PARTITION } from '../shared/topics.js';
import { migrate, partitionSchema, schemaConnectionOptions } from './store/pg-schema.js';

/** Arbitrary but fixed: the session advisory lock that makes one hub process the writer (of the default partition). */
const LEADER_LOCK = 0x6f757471; // "outq"

/**
 * The advisory lock of a partition's leader: the default partition keeps the one-key lock it
 * always had; another takes the two-key lock (LEADER_LOCK, FNV-1a of its name), a separate key
 * space, so partitions are led independently. Two names with the same hash would share a lock:
 * one partition would wait for the other's leader, never write beside it (the epoch fences).
 */
export function leaderLockKey(partition: string): [number] | [number, number] {
  if (partition === DEFAULT_PARTITION) return [LEADER_LOCK];
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(partition)) hash = Math.imul(hash ^ byte, 0x01000193);
  return [LEADER_LOCK, hash | 0];
}
/** How often the leader checks that its lock connection still answers, and how long it waits. */
const HEARTBEAT_MS = 2_000;
const HEARTBEAT_TIMEOUT_MS = 5_000;

export interface LeaderLockOptions {
  log: Logger;
  /** How often a standby asks for the lock (default 500 ms): a dead leader is replaced within about this. */
  pollMs?: number;
  /** The partition to lead (default `default`): its own lock, and the epoch in its own schema's `leadership` row. */
  partition?: string;
  /** Stops standing by (the process is stopping): `acquire` then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Leadership among hub processes that share one PostgreSQL database. The leader holds a
 * session advisory lock on a connection of its own; when its process dies, PostgreSQL ends the
 * session and releases the lock, and a standby polling for it takes over. Each takeover raises
 * the epoch in the `leadership` row: the store fences every group commit on its epoch (a
 * deposed leader can no longer commit), and the hub stamps it on what it sends, so agents stop
 * listening to a lower one. An epoch is at least the time it was taken in ms, so it keeps rising
 * across a restore of the database from a backup.
 */
export class LeaderLock {
  #onLost: ((error: Error) => void) | undefined;
  /** Why the lock was lost, if it was (kept for a listener registered later). */
  #lostBecause: Error | undefined;
  #released = false;
  readonly #heartbeat: NodeJS.Timeout;

  private constructor(
    private readonly client: pg.Client,
    readonly epoch: number,
    readonly partition: string,
    private readonly key: readonly number[],
  ) {
    client.on('error', (error) => this.#lose(error));
    client.on('end', () => this.#lose(new Error('the connection holding the leader lock closed')));
    // TCP keepalive alone takes minutes to notice a dead path to the database: ask every 2 s.
    this.#heartbeat = setInterval(() => {
      client
        .query({ text: 'SELECT 1', query_timeout: HEARTBEAT_TIMEOUT_MS } as pg.QueryConfig)
        .catch((error: unknown) => this.#lose(error instanceof Error ? error : new Error(String(error))));
    }, HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  #lose(error: Error): void {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#heartbeat);
    this.#lostBecause = error;
    this.#onLost?.(error);
  }

  /** Resolves once this process leads, with a new epoch; until then it stands by. */
  static async acquire(url: string, options: LeaderLockOptions): Promise<LeaderLock> {
    const { log } = options;
    const partition = options.partition ?? DEFAULT_PARTITION;
    const schema = partitionSchema(partition);
    const key = leaderLockKey(partition);
    const client = new pg.Client({
      connectionString: url,
      application_name: 'outpost-hub-leader',
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      connectionTimeoutMillis: 10_000,
      ...schemaConnectionOptions(schema),
    });
    client.on('error', () => undefined); // reported through the queries below, or as a lost lock
    await client.connect();
    try {
      await migrate(client, schema); // the leadership row exists before anyone leads
      let said = false;
      for (;;) {
        const { rows } = await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock(${lockParams(key)}) AS locked`, key);
        if (rows[0]!.locked) break;
        if (!said) log.info({ partition }, 'standing by: another hub process leads; taking over when it stops');
        said = true;
        // Stops at once when the process stops, with its reason.
        await sleep(options.pollMs ?? 500, undefined, { signal: options.signal }).catch((error: unknown) => {
          throw options.signal?.reason ?? error;
        });
      }
      options.signal?.throwIfAborted();
      // Above every epoch before it, and at least the time now in ms: a database restored from a
      // backup (whose stored epoch is old) still gives its next leader an epoch above any that
      // agents have heard, so they do not take it for a deposed one.
      const { rows } = await client.query<{ epoch: string }>(
        'UPDATE leadership SET epoch = GREATEST(epoch + 1, $1::bigint) RETURNING epoch',
        [Date.now()],
      );
      const epoch = Number(rows[0]!.epoch);
      log.info({ partition, epoch }, 'leading: this hub process is the writer');
      return new LeaderLock(client, epoch, partition, key);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
  }

  /** Called once if the lock's connection fails (at once if it already has): this process may no longer lead. */
  onLost(callback: (error: Error) => void): void {
    this.#onLost = callback;
    if (this.#lostBecause) callback(this.#lostBecause);
  }

  /** Gives the lock up (a clean stop): a standby takes over at its next poll. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#heartbeat);
    await this.client.query(`SELECT pg_advisory_unlock(${lockParams(this.key)})`, [...this.key]).catch(() => undefined);
    await this.client.end().catch(() => undefined);
  }
}

/** `$1` or `$1, $2`: one bigint key or two int4 keys. */
const lockParams = (key: readonly number[]): string => (key.length === 1 ? '$1' : '$1::int4, $2::int4');
