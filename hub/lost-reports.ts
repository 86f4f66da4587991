import { encodeCbor } from '../shared/codec.js';
import type { Hlc } from '../shared/hlc.js';
import { limits } from '../shared/limits.js';
import type { LostMessage } from '../shared/messages.js';
import { checkCollectionName, checkKey, checkValue, type JsonValue } from '../shared/values.js';
import type { LostReport } from './store/hub-store.js';

export interface LostReportRules {
  /** Whether a collection is this hub's partition's: another partition's hub keeps its own lost versions. */
  ownsCollection: (collection: string) => boolean;
  /** Whether the reporting agent could have held the collection (it may read it, or write it). */
  mayHold: (agentId: string, collection: string) => boolean;
}

/**
 * What the hub keeps of an agent's report chunk: the documents it could have held, of this
 * partition, with a well-formed key and value. The rest is dropped (and counted), not refused:
 * the agent must be able to forget the chunk once acknowledged, or it would send it forever.
 */
export function acceptLostReport(agentId: string, body: LostMessage[1], rules: LostReportRules): { report: LostReport; dropped: number } {
  const docs: LostReport['docs'] = [];
  for (const d of body.docs) {
    if (checkCollectionName(d.c) || checkKey(d.k) || !rules.ownsCollection(d.c) || !rules.mayHold(agentId, d.c)) continue;
    if (d.op === 'put' && !wellFormed(d.v)) continue;
    docs.push({
      collection: d.c,
      key: d.k,
      version: d.ver,
      op: d.op,
      value: d.op === 'put' ? (d.v as JsonValue) : undefined,
      hlc: d.hlc as Hlc,
      origin: d.o,
    });
  }
  return { report: { agentId, lineage: body.lin, fork: body.fork, docs }, dropped: body.docs.length - docs.length };
}

function wellFormed(value: unknown): boolean {
  return value !== undefined && checkValue(value) === undefined && encodeCbor(value).length <= limits.maxValueBytes;
}
