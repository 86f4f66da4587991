import { blobOf, type BlobDescriptor } from '../shared/blobs.js';
import { NotFoundError, WrongPartitionError } from '../shared/errors.js';
import { contentChunks, storeStreamed } from '../content/content-transfer.js';
import type { HubCore } from './core.js';
import type { AgentView } from './fleet.js';
import type { Sample } from './history.js';
import type { BrokerAuthApi, HubApi, HubStatusView } from './http-api.js';
import { createHubMetrics } from './metrics.js';
import { reapplyLost } from './reapply.js';
import type { ShedLog } from './shed.js';

/** One partition's hub in this process, as the HTTP API reaches it. */
export interface PartitionHub {
  readonly partition: string;
  readonly core: HubCore;
  /** Listening for agents, with the store open. */
  readonly ready: boolean;
}

/** The hub that serves the HTTP API: one partition's, which also knows the fleet and the others. */
export interface ServingHub extends PartitionHub {
  /** Agents connected now (or, where connections are not visible, recently active). */
  readonly connectedAgents: number;
  readonly history: { readonly samples: readonly Sample[] };
  /** Where clients shed to protect the others are reported (counted by the metrics). */
  readonly shedLog: ShedLog;
  fleet(): Promise<AgentView[]>;
  /** The hubs of every partition this process leads, by partition, this one included. */
  partitionHubs(): ReadonlyMap<string, PartitionHub>;
}

/**
 * The HTTP API's view of a hub process (HubApi): a collection's reads and writes go to its
 * partition's hub, or fail with WrongPartitionError when this process does not lead that
 * partition; the rest is the serving hub's. Its metrics count from when this is called.
 */
export function createHubApi(hub: ServingHub, brokerAuth: BrokerAuthApi, limits: { maxBlobBytes: number }): HubApi {
  const metrics = createHubMetrics(
    hub.core,
    () => hub.fleet(),
    () => hub.connectedAgents,
    hub.shedLog,
  );

  /** The hub of the partition a collection belongs to, if this process leads it. */
  const hubOf = (collection: string): PartitionHub => {
    const partition = hub.core.partitionOf(collection);
    const hubs = hub.partitionHubs();
    const owner = hubs.get(partition);
    if (!owner) throw new WrongPartitionError(collection, partition, [...hubs.keys()]);
    return owner;
  };

  const status = async (): Promise<HubStatusView> => {
    // Each partition this process leads, this API's own first; LSNs count per partition.
    const hubs = [hub, ...[...hub.partitionHubs().values()].filter((h) => h !== hub)];
    const partitions = await Promise.all(
      hubs.map(async (h) => ({
        partition: h.partition,
        ...(h.core.epoch !== undefined && { epoch: h.core.epoch }),
        head: h.core.store.head,
        ready: h.ready,
        collections: await h.core.store.collectionHeads(),
      })),
    );
    return {
      partition: hub.partition,
      ...(hub.core.epoch !== undefined && { epoch: hub.core.epoch }),
      head: hub.core.store.head,
      prunedThrough: hub.core.store.prunedThrough,
      connectedAgents: hub.connectedAgents,
      collections: Object.assign({}, ...partitions.map((p) => p.collections)) as Record<string, number>,
      partitions,
    };
  };

  return {
    get ready() {
      return hub.ready;
    },
    metrics: async () => ({ contentType: metrics.contentType, text: await metrics.metrics() }),
    history: () => hub.history.samples,
    fleet: () => hub.fleet(),
    collections: () => hub.core.policies.describe(),
    document: async (collection, key) => {
      const doc = await hubOf(collection).core.store.document(collection, key);
      return doc && !doc.deleted ? doc : undefined;
    },
    listDocuments: async (collection, options) => hubOf(collection).core.store.listDocuments(collection, options),
    write: async (write) => hubOf(write.c).core.write(write),
    putBlob: async (collection, key, body, contentType) => {
      const owner = hubOf(collection);
      const { sha256, size } = await storeStreamed(owner.core.store.content, body, limits.maxBlobBytes);
      const blob: BlobDescriptor = { sha256, size, contentType };
      return { ...(await owner.core.write({ c: collection, k: key, op: 'put', v: { ...blob } })), blob };
    },
    blob: async (collection, key) => {
      const owner = hubOf(collection);
      const doc = await owner.core.store.document(collection, key);
      const blob = doc && !doc.deleted ? blobOf(doc.value) : undefined;
      if (!blob) throw new NotFoundError(`no blob ${collection}/${key} at the hub`);
      // The length sent is the content's as stored, never only as a document says.
      const held = await owner.core.store.content.info(blob.sha256);
      if (!held?.complete || held.size !== blob.size) {
        throw new NotFoundError(`the hub does not hold the content of blob ${collection}/${key} (${blob.sha256}, ${blob.size} bytes)`);
      }
      return { blob, chunks: contentChunks(owner.core.store.content, blob.sha256, blob.size) };
    },
    conflicts: async (query) => (query.collection === undefined ? hub : hubOf(query.collection)).core.store.conflicts(query),
    rejections: (limit) => hub.core.store.rejections(limit),
    status,
    lost: async (query) => {
      const hubs = [...hub.partitionHubs().values()];
      const lists = await Promise.all(
        hubs.map(async (h) => (await h.core.store.lostDocuments(query)).map((d) => ({ ...d, partition: h.partition }))),
      );
      return {
        lineages: Object.fromEntries(hubs.map((h) => [h.partition, h.core.store.lineage])),
        lost: lists
          .flat()
          .sort((a, b) => a.reportedAt - b.reportedAt)
          .slice(0, query.limit),
      };
    },
    reapplyLost: async (options) => {
      const summaries: Record<string, Awaited<ReturnType<typeof reapplyLost>>> = {};
      for (const h of hub.partitionHubs().values()) {
        summaries[h.partition] = await reapplyLost(h.core.store, (w) => h.core.reapply(w), {
          ...options,
          mayWrite: (agentId, c) => h.core.access.mayWrite(agentId, c),
        });
      }
      return summaries;
    },
    mayConnect: (question) => brokerAuth.mayConnect(question),
    mayUseTopic: (question) => brokerAuth.mayUseTopic(question),
  };
}
