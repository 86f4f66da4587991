import type { Logger } from 'pino';
import type { OpResult, PageMessage, PullMessage, SnapshotMessage } from '../shared/messages.js';
import type { HubConfig } from './config.js';
import type { RefusedWork } from './refused-work.js';
import type { HubStore } from './store/hub-store.js';

/** What a HubCore tells those who listen, and what it is built from (hub/core.ts). */

export interface HubEvents {
  /** A pull was answered (a log page or a snapshot page). */
  pull: [agentId: string, pull: PullMessage[1], answer: PageMessage | SnapshotMessage];
  /** A group commit finished: how many requests it held, every op's outcome, how long it took. */
  commit: [requests: number, outcomes: OpResult['outcome'][], seconds: number];
  /** Bytes of protocol messages received from agents and sent by the hub. */
  bytes: [direction: 'in' | 'out', bytes: number];
  /**
   * Work refused to one client to bound what it costs (docs/SECURITY.md): a pull replaced by a
   * newer one before it was answered, a replica wait over its limits, collections a status
   * named that do not exist.
   */
  refused: [kind: RefusedWork, agentId: string, count: number];
  /**
   * The store refuses this process as its writer (another hub leads now, or another writer
   * committed): nothing more can be committed. Whoever runs the hub should stop it.
   */
  fatal: [error: Error];
}

export interface HubCoreOptions {
  /**
   * The primary store (this partition's log), opened by whoever assembles the hub: the core
   * works the same on any store. It closes it on `stop()`.
   */
  store: HubStore;
  /** This process's leadership epoch (hub/leadership.ts), stamped on what it sends; none without failover. */
  epoch?: number;
  config?: HubConfig;
  logger?: Logger;
  /** Development mode: every agent may read and write everything. */
  dev?: boolean;
  /**
   * The partition this core is the log of (default `default`): it publishes on that partition's
   * topics and refuses writes to collections of other partitions (`wrong_partition`).
   */
  partition?: string;
  /**
   * Page bytes the hub builds for one agent's pulls per second (with as much again saved up): a
   * device catching up uses a fraction of it; a client that pulls as fast as it can read is held
   * to it. Default DEFAULT_PULL_BYTES_PER_SECOND.
   */
  maxPullBytesPerSecond?: number;
  /** Largest blob content a device may upload over MQTT (default DEFAULT_MAX_BLOB_BYTES), as the HTTP API's. */
  maxBlobBytes?: number;
  /**
   * Publish blob chunks once, on the content's topic, for every device fetching it: only where
   * the broker forwards each to those devices alone (`wantsBlob`; the embedded one). Otherwise each
   * device's chunks go on its own `down` topic.
   */
  fanOutBlobs?: boolean;
  /** An agent's labels now, for its scope (hub/label-cache.ts); none without. */
  labelsOf?: (agentId: string) => Readonly<Record<string, string>>;
  /** Sends a message to MQTT subscribers (QoS 1). Whatever carries it — embedded broker or not. */
  publish: (topic: string, payload: Buffer, retain: boolean) => void;
}
