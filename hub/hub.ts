import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Aedes } from 'aedes';
import pino, { type Logger } from 'pino';
import { upCodec, downCodec, broadcastCodec } from '../shared/codec.js';
import { OutpostError, ErrorCode } from '../shared/errors.js';
import { HybridClock } from '../shared/hlc.js';
import { limits } from '../shared/limits.js';
import type { BroadcastMessage, DownMessage, PageMessage, PullMessage, SnapshotMessage } from '../shared/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol-version.js';
import { topics } from '../shared/topics.js';
import { createBroker } from './broker.js';
import { guardConnection } from './frame-guard.js';
import { Committer } from './committer.js';
import { createHubHttp, type HubHttp } from './http.js';
import { Ingestor, defaultIngestOptions, type HubWriteRequest, type IngestOutput, type WriteResult } from './ingest.js';
import { CollectionPolicies, DEFAULT_HUB_CONFIG, type HubConfig } from './config.js';
import { answerPull } from './pull.js';
import { ReplicationTracker, type ReplicaWait } from './replication-tracker.js';
import { SqliteHubStore } from './store/sqlite-store.js';

export interface HubOptions {
  /** MQTT port; 0 picks a free one. */
  port: number;
  host?: string;
  /** `host:port` for the HTTP API; omitted = no HTTP API. */
  http?: { host: string; port: number };
  dataDir: string;
  /** Admit agents without credentials (development only). */
  dev?: boolean;
  /** Collections, policies and retention; defaults when omitted. */
  config?: HubConfig;
  /** How often retention runs (default 60 s). */
  pruneIntervalMs?: number;
  /** Largest MQTT packet accepted; a larger one closes the connection before it is buffered. */
  maxPacketBytes?: number;
  logger?: Logger;
}

/** Room for the largest message (answered with a typed error when too big) plus MQTT framing. */
export const DEFAULT_MAX_PACKET_BYTES = 4 * limits.maxMessageBytes;

/**
 * The main site: an embedded aedes broker in front of the primary store. Agents' batches are
 * group-committed and acknowledged only after commit; committed change sets are published per
 * collection; pulls are answered from the log.
 */
export interface HubEvents {
  /** A pull was answered (a log page or a snapshot page). */
  pull: [agentId: string, pull: PullMessage[1], answer: PageMessage | SnapshotMessage];
}

export class Hub extends EventEmitter<HubEvents> {
  readonly store: SqliteHubStore;
  readonly clock = new HybridClock();
  readonly log: Logger;
  readonly config: HubConfig;
  readonly policies: CollectionPolicies;
  readonly replication = new ReplicationTracker();
  #broker!: Aedes;
  #server!: Server;
  #http: HubHttp | undefined;
  #committer!: Committer;
  #pruneTimer: NodeJS.Timeout | undefined;

  private constructor(private readonly options: HubOptions) {
    super();
    this.log = options.logger ?? pino({ level: 'silent' });
    this.config = options.config ?? DEFAULT_HUB_CONFIG;
    this.policies = new CollectionPolicies(this.config);
    this.store = new SqliteHubStore(options.dataDir);
  }

  /** Applies log retention now; agents behind the pruned part catch up by snapshot. */
  pruneLog(): number {
    const { maxAgeHours, maxEntries } = this.config.retention;
    const before = this.store.prunedThrough;
    const through = this.store.prune({ maxAgeMs: maxAgeHours * 3_600_000, maxEntries });
    if (through > before) this.log.info({ prunedThrough: through }, 'log retention applied');
    return through;
  }

  /** Commits a write made at the main site; it reaches the agents like any other. */
  write(write: HubWriteRequest['write']): Promise<WriteResult> {
    return this.#committer.write(write);
  }

  static async start(options: HubOptions): Promise<Hub> {
    const hub = new Hub(options);
    try {
      await hub.#start();
    } catch (error) {
      await hub.stop();
      throw error;
    }
    return hub;
  }

  async #start(): Promise<void> {
    const { options, log } = this;
    if (options.dev) {
      log.warn('DEVELOPMENT MODE: any agent may connect without credentials. Never expose this hub to a network.');
    }
    const ingestor = new Ingestor(this.store, this.clock, this.policies, {
      ...defaultIngestOptions,
      maxFutureSkewMs: this.config.maxClockSkewSeconds * 1000,
    });
    this.#committer = new Committer(
      ingestor,
      (output) => this.#publishCommitted(output),
      (agentIds, error) => {
        for (const agentId of agentIds) {
          this.#sendDown(agentId, ['error', { code: ErrorCode.STORAGE_FAILED, message: `hub could not commit: ${error.message}` }]);
        }
      },
      log,
    );
    this.#broker = await createBroker({ dev: options.dev ?? false, log, onUp: (agentId, payload) => this.#onUp(agentId, payload) });
    const maxPacketBytes = options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES;
    this.#server = createServer((socket) => {
      this.#broker.handle(guardConnection(socket, maxPacketBytes, (peer) => {
        log.warn({ peer, maxPacketBytes }, 'closed a connection that sent a packet over the size limit');
      }));
    });
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(options.port, options.host ?? '0.0.0.0', () => resolve());
    });
    this.#publishStatus();
    if (options.http) {
      this.#http = await createHubHttp(this, log);
      await this.#http.listen({ host: options.http.host, port: options.http.port });
    }
    const { maxAgeHours, maxEntries } = this.config.retention;
    if (maxAgeHours > 0 || maxEntries > 0) {
      this.#pruneTimer = setInterval(() => this.pruneLog(), options.pruneIntervalMs ?? 60_000);
      this.#pruneTimer.unref();
    }
    log.info({ mqttPort: this.port, http: this.httpAddress, data: options.dataDir, head: this.store.head }, 'hub started');
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  get httpAddress(): string | undefined {
    const address = this.#http?.server.address() as AddressInfo | null | undefined;
    return address ? `http://${address.address}:${address.port}` : undefined;
  }

  get connectedAgents(): number {
    return this.#broker?.connectedClients ?? 0;
  }

  #onUp(agentId: string, payload: Buffer): void {
    let message;
    try {
      message = upCodec.decode(payload);
    } catch (error) {
      const { code, message: text } = error instanceof OutpostError ? error : { code: ErrorCode.MALFORMED_MESSAGE, message: String(error) };
      this.log.warn({ agentId, code, bytes: payload.length }, 'refused message from agent');
      this.#sendDown(agentId, ['error', { code, message: text }]);
      return;
    }
    switch (message[0]) {
      case 'batch':
        this.#committer.enqueueBatch(agentId, message[1]);
        break;
      case 'pull': {
        const answer = answerPull(this.store, this.clock, message[1], limits.maxMessageBytes / 2);
        this.#sendDown(agentId, answer);
        this.emit('pull', agentId, message[1], answer);
        break;
      }
      case 'status':
        this.#notifyReplicated(this.replication.report(agentId, message[1].applied));
        break;
    }
  }

  #publishCommitted({ replies, changeSets, replicaWaits }: IngestOutput): void {
    for (const { agentId, message } of replies) {
      if (message[0] === 'reincarnate') {
        this.log.error({ agentId, incarnation: message[1].inc, seq: message[1].seq },
          'agent reused sequence numbers with different writes (restored from an old backup?); told it to start a new incarnation');
      }
      this.#sendDown(agentId, message);
    }
    for (const set of changeSets) this.#broadcast(topics.collection(set[1].c), set);
    if (replicaWaits.length > 0) this.#notifyReplicated(this.replication.add(replicaWaits));
  }

  #notifyReplicated(done: ReplicaWait[]): void {
    const byWriter = new Map<string, { agentId: string; inc: string; seqs: number[] }>();
    for (const w of done) {
      const id = `${w.agentId}/${w.inc}`;
      const entry = byWriter.get(id) ?? { agentId: w.agentId, inc: w.inc, seqs: [] };
      entry.seqs.push(w.seq);
      byWriter.set(id, entry);
    }
    for (const { agentId, inc, seqs } of byWriter.values()) {
      this.#sendDown(agentId, ['replicated', { inc, hlc: this.clock.tick(), seqs }]);
    }
  }

  #publishStatus(): void {
    this.#broadcast(topics.hub, ['hub', { v: PROTOCOL_VERSION, hlc: this.clock.tick(), head: this.store.head, epoch: 0, ...this.policies.describe() }], true);
  }

  #sendDown(agentId: string, message: DownMessage): void {
    this.#publish(topics.down(agentId), downCodec.encode(message), false);
  }

  #broadcast(topic: string, message: BroadcastMessage, retain = false): void {
    this.#publish(topic, broadcastCodec.encode(message), retain);
  }

  #publish(topic: string, payload: Buffer, retain: boolean): void {
    this.#broker.publish({ cmd: 'publish', topic, payload, qos: 1, retain, dup: false }, (error) => {
      if (error) this.log.warn({ topic, err: error.message }, 'publish failed');
    });
  }

  /** Commits what is queued, closes every connection, then the store. */
  async stop(): Promise<void> {
    clearInterval(this.#pruneTimer);
    this.#committer?.drain();
    await this.#http?.close();
    if (this.#broker) await new Promise<void>((resolve) => this.#broker.close(() => resolve()));
    if (this.#server?.listening) await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.store.close();
  }
}
