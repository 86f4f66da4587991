import { decodeHlc, type Hlc } from '../shared/hlc.js';
import type { LostMessage } from '../shared/messages.js';
import { parseValue } from '../shared/value-bytes.js';
import { checkCollectionName, checkKey, type JsonValue } from '../shared/values.js';
import type { Logger } from 'pino';
import type { HubStore, Lineage, LostReport } from './store/hub-store.js';

/** How far ahead of the hub's clock a lost version's timestamp may be (as for any write). */
const MAX_FUTURE_MS = 60_000;

export interface LostReportRules {
  /** This database's lineage now: a report is of the lineage it replaced, parting at its fork. */
  lineage: Lineage;
  /** Whether a collection is this hub's partition's: another partition's hub keeps its own lost versions. */
  ownsCollection: (collection: string) => boolean;
  mayRead: (agentId: string, collection: string) => boolean;
  mayWrite: (agentId: string, collection: string) => boolean;
  now?: number;
}

/**
 * What the hub keeps of an agent's report chunk: versions above the fork, of this partition,
 * with a well-formed key, value and timestamp, that the agent could have held: its own writes
 * of collections it may write, others' of collections it may read. A report of a marked restore
 * must name the fork this hub recorded; one of an unmarked restore (the lineage is this one)
 * names a fork the hub cannot check, so it is kept with fork 0, which makes a reapply of it
 * concurrent with whatever the document holds (see hub/reapply.ts). The rest is dropped (and
 * counted), not refused: the agent must be able to forget the chunk once acknowledged, or it
 * would send it forever.
 */
export function acceptLostReport(agentId: string, body: LostMessage[1], rules: LostReportRules): { report: LostReport; dropped: number } {
  const unmarked = body.lin === rules.lineage.id;
  if (!unmarked && body.fork !== rules.lineage.fork) {
    return { report: { agentId, lineage: body.lin, fork: body.fork, docs: [] }, dropped: body.docs.length };
  }
  const latest = (rules.now ?? Date.now()) + MAX_FUTURE_MS;
  const docs: LostReport['docs'] = [];
  for (const d of body.docs) {
    if (checkCollectionName(d.c) || checkKey(d.k) || !rules.ownsCollection(d.c)) continue;
    if (!(d.o === agentId ? rules.mayWrite(agentId, d.c) : rules.mayRead(agentId, d.c))) continue;
    if (d.ver <= body.fork || !plausibleHlc(d.hlc, latest)) continue;
    let value: JsonValue | undefined;
    if (d.op === 'put') {
      const parsed = d.v === undefined ? undefined : parseValue(d.v);
      if (!parsed || 'reason' in parsed) continue;
      value = parsed.value;
    }
    docs.push({
      collection: d.c,
      key: d.k,
      version: d.ver,
      op: d.op,
      value,
      hlc: d.hlc as Hlc,
      origin: d.o,
    });
  }
  return { report: { agentId, lineage: body.lin, fork: unmarked ? 0 : body.fork, docs }, dropped: body.docs.length - docs.length };
}

function plausibleHlc(hlc: string, latest: number): boolean {
  try {
    return decodeHlc(hlc as Hlc).wall <= latest;
  } catch {
    return false;
  }
}

/**
 * Keeps a chunk of an agent's report of versions a restore lost, then acknowledges it; if it
 * cannot be stored, the agent sends it again after its timeout.
 */
export async function recordLostReport(
  agentId: string,
  body: LostMessage[1],
  context: { store: HubStore; log: Logger; rules: LostReportRules; acknowledge: (id: number) => void },
): Promise<void> {
  const { report, dropped } = acceptLostReport(agentId, body, context.rules);
  try {
    await context.store.recordLost(report);
  } catch (error) {
    context.log.error({ err: error, agentId }, 'could not store a report of lost writes; the agent will send it again');
    return;
  }
  context.log.warn(
    { agentId, lineage: body.lin, fork: body.fork, documents: report.docs.length, ...(dropped > 0 && { dropped }) },
    'an agent reported versions the restored database lost; list them with `outpost hub restore lost`',
  );
  context.acknowledge(body.id);
}
