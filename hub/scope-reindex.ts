import type { Logger } from 'pino';
import { bucketIdOf, wholeCollectionBucketId } from '../shared/buckets.js';
import { ConfigError } from '../shared/errors.js';
import type { CollectionConfig } from './config.js';
import type { ScopeRules } from './scope-rules.js';
import type { HubStore, ScopeRulesChange } from './store/hub-store.js';

/**
 * Brings the bucket index in line with the config's scope rules before the hub serves: each
 * collection whose rules differ from those it was last indexed with (or that is newly scoped) has
 * its documents' buckets computed again. A document's buckets before are kept as its prior
 * buckets until it is next written: a device that held it under them is then sent a light tag
 * with its new buckets when it joins them, not the document again. A collection scoped for the
 * first time has its documents' prior bucket be the whole collection (wholeCollectionBucketId).
 *
 * A rebucket cut short (the hub stopped part way) left part of its collection indexed by rules
 * that were never served: it is done again for the rules configured now, even when they are the
 * ones served before it (a config rolled back), and undone if the collection is configured
 * unscoped and was not served scoped before it.
 *
 * A collection that was scoped and is served whole again is refused: its devices hold only their
 * scope of it, and nothing would send them the rest.
 */
export async function reindexScopes(
  store: HubStore,
  rules: ScopeRules,
  collections: Readonly<Record<string, Pick<CollectionConfig, 'scope'>>>,
  log: Logger,
): Promise<void> {
  const served = await store.scopeRulesServed();
  const unfinished = await store.unfinishedRebuckets();
  for (const [collection] of served) {
    if (!rules.scoped(collection)) {
      throw new ConfigError(
        `collections.${collection}: this hub's database serves it scoped, and serving it whole again is not supported yet ` +
          '(its devices hold only their scope of it and would not be sent the rest); keep a scope on it',
      );
    }
  }
  for (const collection of unfinished) {
    if (rules.scoped(collection)) continue;
    const changed = await store.rebucket(collection, unscoped(store.head));
    log.warn({ collection, documents: changed }, 'a scope rebucket cut short was undone: the collection is served whole, as before it');
  }
  for (const collection of rules.collections) {
    const wanted = JSON.stringify(collections[collection]?.scope);
    if (served.get(collection)?.rules === wanted && !unfinished.has(collection)) continue;
    const since = store.head;
    const changed = await store.rebucket(collection, {
      rules: wanted,
      since,
      bucketsOf: (key, value) => rules.bucketsOfDocument(collection, key, value).map(bucketIdOf),
      // A document with no buckets was written while the collection was served whole: every device reading it held it so.
      prior: (old) => old ?? [wholeCollectionBucketId(collection)],
    });
    log.info(
      { collection, documents: changed, since, redone: unfinished.has(collection) },
      "the collection's scope rules changed (or their last rebucket was cut short): its documents' buckets were computed again",
    );
  }
}

/** Takes every bucket off a collection's documents: no rules asked. */
function unscoped(since: number): ScopeRulesChange {
  return { rules: undefined, since, bucketsOf: () => [], prior: () => undefined };
}
