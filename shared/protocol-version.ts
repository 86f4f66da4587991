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
 *      for replicas (`waits`), so that a hub that restarted learns them again. Later additions
 *      an older peer never receives unless it asks: scopes (`scope`, bucket pulls and change
 *      sets, `hello`, the `bye` topic).
 * - 4: content digests. Change sets and pages carry the digest of their collection after their
 *      last change (`dg`), which an agent on 3 would refuse as an unknown field; status reports
 *      may ask the hub for its digests (`v`, answered by `digests`) and carry what verifying
 *      found (`vf`); range repair asks for sub-range digests (`ranges` → `rangesums`) and for
 *      the documents of ranges (`refetch` → `refetched`). Before any release, 4 also gained the
 *      digests of scope buckets: a bucket's change sets and its last page carry its digest
 *      (`dg`), status reports ask for buckets' digests (`vb`, answered in `digests` `bs`), and
 *      range repair asks of one bucket (`b`).
 * - 5: values travel as their own CBOR encoding, a byte string (`v` of write ops, changes, pages,
 *      refetched and lost documents; shared/value-bytes.ts): the hub checks a writer's bytes
 *      once and stores, logs, digests and sends them as they are; replicas store them as they
 *      arrive. An agent on 4 would read a byte string where it expects a value.
 * - 6: blobs. Collection policies may say a collection holds blobs (`blobs`), which an agent on 5
 *      would refuse as an unknown field; blob content travels in chunks apart from the log
 *      (shared/blob-messages.ts): up `bhave` (offer content, answered by `bneed`), `bchunk`
 *      (one chunk, answered by `bgot` once durable), `bget` (ask for chunks, answered by `bpart`
 *      or `bnone`), fanned out on `blobs/<hash>` with the embedded broker; status reports may
 *      carry the device's transfer budget (`tb`).
 */
export const PROTOCOL_VERSION = 6;

/** This build's software version, reported by agents to the hub's fleet view. */
export const SOFTWARE_VERSION = '0.1.0';
