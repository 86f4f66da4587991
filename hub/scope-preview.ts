import { AccessControl } from './access.js';
import { scopeRules, type HubConfig } from './config.js';
import { groupsByMember, type ScopeRules, type ScopeSubject } from './scope-rules.js';

/** Documents and their bytes (the stored value's size). */
export interface Tally {
  documents: number;
  bytes: number;
}

/** A device as the preview sees it: its id and labels (its groups come from each config). */
export interface PreviewDevice {
  agentId: string;
  labels: Readonly<Record<string, string>>;
}

/** One live document of a collection, with the size of its stored value. */
export interface PreviewDocument {
  key: string;
  value: unknown;
  bytes: number;
}

export interface PreviewInput {
  /** The config the hub runs with, and the one to deploy. */
  before: HubConfig;
  after: HubConfig;
  devices: readonly PreviewDevice[];
  /** Every collection the hub holds documents of. */
  collections: readonly string[];
  /** A collection's live documents, read once (page by page) per collection the change may affect. */
  documents: (collection: string) => AsyncIterable<PreviewDocument>;
}

export interface DevicePreview extends PreviewDevice {
  /** What the device holds of the affected collections under each config. */
  before: Tally;
  after: Tally;
  /** What it would receive, and evict. */
  entered: Tally;
  left: Tally;
}

export interface ScopePreview {
  devices: DevicePreview[];
  /** Over every device. */
  total: { entered: Tally; left: Tally };
  /** The collections that may move (scoped, or read by other devices, under either config); only these are read. */
  collections: string[];
}

const zero = (): Tally => ({ documents: 0, bytes: 0 });
const add = (into: Tally, t: Tally): void => {
  into.documents += t.documents;
  into.bytes += t.bytes;
};

/** One side of the comparison: a config's rules, access and groups. */
interface Side {
  rules: ScopeRules;
  access: AccessControl;
  subject: (device: PreviewDevice) => ScopeSubject;
}

function side(config: HubConfig): Side {
  const groupsOf = groupsByMember(config.access.groups);
  return {
    rules: scopeRules(config.collections),
    access: new AccessControl(config.access, false),
    subject: (d) => ({ agentId: d.agentId, labels: d.labels, groups: groupsOf.get(d.agentId) ?? [] }),
  };
}

/**
 * What deploying a new config would move, per device and in total, before anything changes:
 * for each device, the documents that would enter its scope and leave it (and their bytes),
 * under the new scope rules, access rules and groups, with the labels the devices have now.
 *
 * The cost is one read of each affected collection, not one per device: documents are grouped
 * by the pair of bucket sets they have under the two configs (a few distinct pairs, however many
 * documents), and each device adds up the groups its buckets reach.
 */
export async function previewScopes(input: PreviewInput): Promise<ScopePreview> {
  const before = side(input.before);
  const after = side(input.after);
  const devices: DevicePreview[] = input.devices.map((d) => ({ ...d, before: zero(), after: zero(), entered: zero(), left: zero() }));
  const affected: string[] = [];
  for (const collection of input.collections) {
    const scoped = [before.rules.scoped(collection), after.rules.scoped(collection)] as const;
    const reads = input.devices.map((d) => [before.access.mayRead(d.agentId, collection), after.access.mayRead(d.agentId, collection)]);
    // Whole under both, read by the same devices: nothing moves, and it is not read.
    if (!scoped[0] && !scoped[1] && reads.every(([b, a]) => b === a)) continue;
    affected.push(collection);
    const groups = await groupDocuments(collection, input.documents(collection), before.rules, after.rules);
    devices.forEach((device, i) => {
      const holdsBefore = holding(groups, 0, reads[i]![0]!, scoped[0], before.rules.bucketsOfDevice(collection, before.subject(device)));
      const holdsAfter = holding(groups, 1, reads[i]![1]!, scoped[1], after.rules.bucketsOfDevice(collection, after.subject(device)));
      add(device.before, sum(groups, holdsBefore));
      add(device.after, sum(groups, holdsAfter));
      add(device.entered, difference(groups, holdsAfter, holdsBefore));
      add(device.left, difference(groups, holdsBefore, holdsAfter));
    });
  }
  const total = { entered: zero(), left: zero() };
  for (const d of devices) {
    add(total.entered, d.entered);
    add(total.left, d.left);
  }
  return { devices, total, collections: affected };
}

/** Documents grouped by their bucket sets under the two configs, with an index from each bucket to its groups. */
interface Groups {
  tallies: Tally[];
  /** Of every document read. */
  total: Tally;
  /** Per config: bucket → the groups whose documents are in it. */
  byBucket: [Map<string, number[]>, Map<string, number[]>];
}

async function groupDocuments(
  collection: string,
  documents: AsyncIterable<PreviewDocument>,
  before: ScopeRules,
  after: ScopeRules,
): Promise<Groups> {
  const index = new Map<string, number>();
  const groups: Groups = { tallies: [], total: zero(), byBucket: [new Map<string, number[]>(), new Map<string, number[]>()] };
  for await (const doc of documents) {
    const sets = [before, after].map((rules) => rules.bucketsOfDocument(collection, doc.key, doc.value).sort());
    // JSON, not a join: bucket values come from documents and may hold any separator.
    const signature = JSON.stringify(sets);
    let g = index.get(signature);
    if (g === undefined) {
      const added = groups.tallies.push(zero()) - 1;
      index.set(signature, added);
      sets.forEach((buckets, side) => {
        for (const b of buckets) {
          const list = groups.byBucket[side]!.get(b);
          if (list) list.push(added);
          else groups.byBucket[side]!.set(b, [added]);
        }
      });
      g = added;
    }
    const one = { documents: 1, bytes: doc.bytes };
    add(groups.tallies[g]!, one);
    add(groups.total, one);
  }
  return groups;
}

/** The groups a device holds under one config: all (unscoped and readable), none, or those its buckets reach. */
function holding(groups: Groups, side: 0 | 1, reads: boolean, scoped: boolean, buckets: readonly string[]): Set<number> | 'all' {
  if (!reads) return new Set();
  if (!scoped) return 'all';
  const held = new Set<number>();
  for (const b of buckets) for (const g of groups.byBucket[side].get(b) ?? []) held.add(g);
  return held;
}

function sum(groups: Groups, held: Set<number> | 'all'): Tally {
  if (held === 'all') return { ...groups.total };
  const t = zero();
  for (const g of held) add(t, groups.tallies[g]!);
  return t;
}

/**
 * What is in `a` and not in `b`. With `a` whole, the total less `b`: never a walk over every
 * group per device (a million documents, each its own group, for 10,000 devices).
 */
function difference(groups: Groups, a: Set<number> | 'all', b: Set<number> | 'all'): Tally {
  if (b === 'all') return zero();
  if (a === 'all') {
    const inB = sum(groups, b);
    return { documents: groups.total.documents - inB.documents, bytes: groups.total.bytes - inB.bytes };
  }
  const t = zero();
  for (const g of a) if (!b.has(g)) add(t, groups.tallies[g]!);
  return t;
}
