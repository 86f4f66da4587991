import type { HybridClock } from '../shared/hlc.js';
import type { HubStatusMessage } from '../shared/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol-version.js';
import { DEFAULT_PARTITION } from '../shared/topics.js';
import { assignment, type CollectionPolicies, type HubConfig } from './config.js';
import type { HubStore } from './store/hub-store.js';

/**
 * The retained status on a partition's hub topic: who the hub is (its lineage, epoch and head)
 * and the policies agents follow. A named partition's says which it is (`part`); the default
 * partition's carries the assignment (`parts`), which agents route their writes by; without
 * partitions it is what it always was.
 */
export function hubStatus(hub: {
  clock: HybridClock;
  store: HubStore;
  epoch: number | undefined;
  config: HubConfig;
  policies: CollectionPolicies;
  partition: string;
}): HubStatusMessage {
  const parts = assignment(hub.config);
  return [
    'hub',
    {
      v: PROTOCOL_VERSION,
      hlc: hub.clock.tick(),
      head: hub.store.head,
      ...(hub.epoch !== undefined && { epoch: hub.epoch }),
      lin: hub.store.lineage.id,
      fork: hub.store.lineage.fork,
      ...hub.policies.describe(),
      ...(hub.partition !== DEFAULT_PARTITION && { part: hub.partition }),
      ...(hub.partition === DEFAULT_PARTITION && Object.keys(parts).length > 0 && { parts }),
      ...(hub.partition === DEFAULT_PARTITION && Object.keys(hub.config.budgets).length > 0 && { budgets: true as const }),
    },
  ];
}
