/**
 * What a hub store answers about content digests (shared/digest.ts): each document's hash and
 * each collection's digest are kept with every change, in its transaction (`IngestTx.commit`), so
 * that a replica can compare what it holds with the hub at an LSN, narrow a difference down by
 * key ranges and fetch just the documents of the ranges that differ; and so that the hub can
 * scrub its own database. Part of HubStore; every implementation passes the contract suite.
 */
export interface DigestReads {
  /**
   * A collection's digest as of `lsn`: its current digest if it has not changed since (0 if it
   * never had a change), else the digest logged with its newest change at or before `lsn`.
   * Undefined when that cannot be told: retention pruned that change, or it predates digests.
   */
  digestAt(collection: string, lsn: number): Promise<number | undefined>;
}
