import { NotFoundError } from '../shared/errors.js';
import type { ContentStore } from './content-store.js';
import { contentMatches } from './content-transfer.js';

/** Content a scrub found not to match its address (its bytes, or a chunk gone). */
export interface DamagedContent {
  hash: string;
  size: number;
  /** Dropped by the repair: it reads as not held until it is uploaded again. */
  removed: boolean;
}

export interface ContentCheck {
  /** Contents held whole that were read, and their bytes. */
  checked: number;
  bytes: number;
  damaged: DamagedContent[];
}

/**
 * Reads every content held whole against its address (`outpost hub verify`). With `repair`,
 * damaged content is dropped: a reader is then told it is unavailable rather than given bytes
 * that are not what its document says, and the next upload of the same content (a device's, or
 * `PUT /v1/blobs` at the hub) stores it whole again.
 */
export async function checkContent(store: ContentStore, repair: boolean): Promise<ContentCheck> {
  const report: ContentCheck = { checked: 0, bytes: 0, damaged: [] };
  for await (const { hash, size } of store.listComplete()) {
    const matches = await contentMatches(store, hash, size).catch((error: unknown) => {
      // A chunk gone from under it is damage too; anything else (the store unreachable) stops the scrub.
      if (error instanceof NotFoundError) return false;
      throw error;
    });
    report.checked += 1;
    report.bytes += size;
    if (!matches) report.damaged.push({ hash, size, removed: repair && (await store.remove(hash)) });
  }
  return report;
}
