/** Size limits shared by both ends; the hub enforces them, the agent checks early. */
export const limits = {
  /** Largest encoded message either side accepts before decoding. */
  maxMessageBytes: 1024 * 1024,
  /** Largest encoded document value. */
  maxValueBytes: 256 * 1024,
  /** Longest document key, in UTF-8 bytes. */
  maxKeyBytes: 512,
  /** Most operations in one uploaded batch. */
  maxBatchOps: 1000,
  /** Deepest nesting of a document value. */
  maxValueDepth: 32,
  /** Most documents in one report of writes a restored hub lost (`lost`); the agent sends several. */
  maxLostDocs: 500,
  /**
   * Most changes (or snapshot documents) in one pull page, whatever a pull asks; agents ask for
   * this many. A page is also cut at half a message. Bigger pages would hold the hub's event loop
   * longer per read; smaller ones pay a round trip per few hundred rows (catch-up ran 15 % slower at 500).
   */
  maxPullPage: 1000,
} as const;

export type Limits = typeof limits;

export const COLLECTION_PATTERN = /^[a-z0-9_-]{1,64}$/;
/** Agent ids become MQTT client ids and topic levels: no wildcards, no separators. */
export const AGENT_ID_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;
