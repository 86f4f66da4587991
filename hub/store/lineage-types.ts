import type { Hlc } from '../../shared/hlc.js';
import type { JsonValue } from '../../shared/values.js';

/** What a hub database knows of its history and of what restores lost (part of HubStore: see hub-store.ts). */

/**
 * Where a hub database's history comes from: a random `id` set when the database is created,
 * changed by every restore from a backup, and the LSN (`fork`) at which that restore parted it
 * from the history before (the restored database's head; 0 for a database never restored).
 * LSNs above `fork` mean different changes in different lineages.
 */
export interface Lineage {
  id: string;
  fork: number;
}

/** A document version a restored hub no longer has, at its version in the lineage it was lost from. */
export interface LostVersion {
  collection: string;
  key: string;
  version: number;
  op: 'put' | 'del';
  value: JsonValue | undefined;
  hlc: Hlc;
  origin: string;
}

/** Document versions an agent held that a restored hub no longer has (see shared/messages.ts `lost`). */
export interface LostReport {
  agentId: string;
  /** The lineage the versions were of, and where the restore parted from it. */
  lineage: string;
  fork: number;
  docs: LostVersion[];
}

/** A lost document version as the hub keeps it: once however many agents report it, with who did and when. */
export interface LostDocument extends LostVersion {
  lineage: string;
  fork: number;
  /** When it was first reported (ms epoch). */
  reportedAt: number;
  reporters: Array<{ agentId: string; at: number }>;
  /** Set once `outpost hub restore reapply` dealt with it: committed again, lost to a later write, or superseded by a newer lost version. */
  reapplied?: { at: number; outcome: string; lsn: number | null; reason: string | null };
}

/** What reapplying did with one lost version (see LostDocument.reapplied). */
export interface ReapplyOutcome {
  lineage: string;
  collection: string;
  key: string;
  version: number;
  outcome: string;
  lsn: number | null;
  reason: string | null;
}
