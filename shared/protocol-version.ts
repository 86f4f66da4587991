/**
 * The wire protocol version, carried in every topic (`outpost/v{N}/…`) and in the hub's
 * retained status message. Bump it for any change an older peer would misread; a peer on
 * another version simply never meets this one on the same topics.
 *
 * History:
 * - 1: batch / pull up; ack / resync / page / error down; per-collection change sets with
 *      the previous LSN of the collection; retained hub status with collection policies;
 *      status reports and replica acknowledgements; snapshots when the log was pruned.
 * - 2: acks pack committed ops into runs (`runs`, `dupRuns`); messages of 512 bytes or more
 *      may travel deflated, as one CBOR byte string.
 * - 3: the hub status carries the database's lineage and fork (`lin`, `fork`), which change when
 *      the hub is restored from a backup; agents report the writes the restore lost (`lost` up,
 *      acknowledged by `lostack` down); status reports carry the writer's writes still waiting
 *      for replicas (`waits`), so that a hub that restarted learns them again.
 */
export const PROTOCOL_VERSION = 3;

/** This build's software version, reported by agents to the hub's fleet view. */
export const SOFTWARE_VERSION = '0.1.0';
