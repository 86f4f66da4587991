import { outcomeReader } from '../helpers/hub-outcomes.js';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import pino from 'pino';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { parseHubConfig, scopeRules, type HubConfig } from '../../hub/config.js';
import { groupsByMember } from '../../hub/scope-rules.js';
import { bucketIdOf } from '../../shared/buckets.js';
import { sqliteDirOf } from '../../hub/store/open-store.js';
import { decodeCbor } from '../../shared/codec.js';
import { SimNetwork } from '../helpers/sim-network.js';
import { tempDir } from '../helpers/temp.js';
import { sleep } from '../helpers/wait.js';
import { prng } from '../helpers/prng.js';

const AGENTS = ['pi-0', 'pi-1', 'pi-2'];
const KEYS = ['k0', 'k1', 'k2', 'k3'];
/** Two collections; in the partitioned run `ord` has a partition (`billing`), a log and a hub of its own. */
const COLLECTIONS = ['kv', 'ord'] as const;
const PARTITIONED = parseHubConfig({ partitions: { billing: ['ord'] } });
const partitionOf = (config: HubConfig | undefined, collection: string): string =>
  config && Object.keys(config.partitions).length > 0 && collection === 'ord' ? 'billing' : 'default';
/**
 * The scoped run: `kv` documents go to the devices whose label `site` their field `site` names
 * (writes choose a site, devices are relabelled, and the hub moves documents); `ord` keys start
 * with the id of the one device that holds them.
 */
const SITES = ['a', 'b'];
const SCOPED = parseHubConfig({
  collections: { kv: { scope: { field: 'site', equals: '{label.site}' } }, ord: { scope: { key: '{agent}/' } } },
  access: { default: { read: ['*'], write: ['*'] } },
});
const scoped = (config: HubConfig | undefined): boolean => config !== undefined && scopeRules(config.collections).collections.length > 0;
/** In the scoped run, `ord` key i belongs to one device. */
const keyOf = (config: HubConfig | undefined, collection: string, k: number): string =>
  scoped(config) && collection === 'ord' ? `${AGENTS[k % AGENTS.length]}/${KEYS[k]}` : KEYS[k]!;

type Command =
  | { t: 'write'; a: number; k: number; del: boolean; c?: number; s?: number }
  /** The scoped run: a device's label `site` changes (or goes, `s` -1) while the hub runs. */
  | { t: 'relabel'; a: number; s: number }
  /** The scoped run: the hub itself writes a `kv` document, moving it to site `s`. */
  | { t: 'hubWrite'; k: number; s: number }
  | { t: 'deliver'; n: number }
  | { t: 'disconnect'; a: number }
  | { t: 'reconnect'; a: number }
  | { t: 'restartAgent'; a: number }
  | { t: 'restartHub' }
  /** Restarts one partition's hub only (`billing`, in the partitioned run). */
  | { t: 'restartPartition' };

const agentIndex = fc.integer({ min: 0, max: AGENTS.length - 1 });
const keyIndex = fc.integer({ min: 0, max: KEYS.length - 1 });
const site = fc.integer({ min: 0, max: SITES.length - 1 });
type Weighted = { weight: number; arbitrary: fc.Arbitrary<Command> };
/** Writes (of a site, in the scoped run), deliveries, and the faults every run has. */
const common = (scoped: boolean): Weighted[] => [
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('write' as const),
      a: agentIndex,
      k: keyIndex,
      del: fc.boolean(),
      c: fc.integer({ min: 0, max: 1 }),
      ...(scoped && { s: site }),
    }),
  },
  { weight: 6, arbitrary: fc.record({ t: fc.constant('deliver' as const), n: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('disconnect' as const), a: agentIndex }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('reconnect' as const), a: agentIndex }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('restartAgent' as const), a: agentIndex }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('restartHub' as const) }) },
];
const command: fc.Arbitrary<Command> = fc.oneof(...common(false), {
  weight: 1,
  arbitrary: fc.record({ t: fc.constant('restartPartition' as const) }),
});
const scopedCommand: fc.Arbitrary<Command> = fc.oneof(
  ...common(true),
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant('relabel' as const), a: agentIndex, s: fc.integer({ min: -1, max: SITES.length - 1 }) }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('hubWrite' as const), k: keyIndex, s: site }) },
);

/** A write the app was told is durable on its device. */
interface Acknowledged {
  agentId: string;
  collection: string;
  inc: string;
  seq: number;
  key: string;
  value: unknown;
  del: boolean;
  hlc: string;
}

async function run(commands: Command[], seed: number, duplicate: number, reorderWindow: number, config?: HubConfig): Promise<void> {
  const dir = tempDir('model');
  // Every device starts at site a; `relabel` moves them (the hub reads labels as they are now).
  const labels = new Map<string, Record<string, string>>(AGENTS.map((id) => [id, { site: SITES[0]! }]));
  const net = new SimNetwork(
    { dataDir: join(dir, 'hub'), dev: true, ...(config && { config }), labelsOf: (id) => labels.get(id) ?? {} },
    prng(seed),
    { duplicate, reorderWindow },
  );
  net.startHub();
  const acknowledged: Acknowledged[] = [];
  const open = (agentId: string): Agent => {
    const agent = new Agent({
      agentId,
      hubUrl: 'sim://hub',
      dataDir: join(dir, agentId),
      transport: net.transport(agentId),
      ackTimeoutMs: 150,
      waitTimeoutMs: 1000,
      ...(process.env.OUTPOST_MODEL_DEBUG && { logger: pino({ level: 'debug', name: agentId }) }),
    });
    // Writes made before the agent heard of the partitions move to their partition's sequence.
    agent.on('moved', (moved) => {
      for (const { from, to } of moved) {
        const write = acknowledged.find((w) => w.agentId === agentId && w.inc === from.incarnation && w.seq === from.seq);
        if (write) Object.assign(write, { inc: to.incarnation, seq: to.seq });
      }
    });
    return agent.start();
  };
  const agents = AGENTS.map(open);
  let counter = 0;
  const partitions = net.partitions;

  try {
    for (const c of commands) {
      switch (c.t) {
        case 'write': {
          const agent = agents[c.a]!;
          const collection = COLLECTIONS[c.c ?? 0]!;
          const key = keyOf(config, collection, c.k);
          const value = { by: agent.id, n: counter++, ...(c.s !== undefined && { site: SITES[c.s] }) };
          const receipt = c.del ? await agent.del(collection, key) : await agent.put(collection, key, value);
          acknowledged.push({
            agentId: agent.id,
            collection,
            inc: receipt.incarnation,
            seq: receipt.seq,
            key,
            value,
            del: c.del,
            hlc: receipt.hlc,
          });
          break;
        }
        case 'deliver':
          for (let i = 0; i < c.n; i++) await net.step();
          break;
        case 'relabel':
          labels.set(AGENTS[c.a]!, c.s < 0 ? {} : { site: SITES[c.s]! });
          net.hub?.scopes.relabelled([AGENTS[c.a]!]);
          break;
        case 'hubWrite':
          // Through the same group commit as the devices' batches; its outcome is the hub's to check.
          if (net.hub) await net.hub.write({ c: 'kv', k: KEYS[c.k]!, op: 'put', v: { by: 'hub', n: counter++, site: SITES[c.s] } });
          break;
        case 'disconnect':
          net.disconnect(AGENTS[c.a]!);
          break;
        case 'reconnect':
          net.connect(AGENTS[c.a]!);
          break;
        case 'restartAgent':
          await agents[c.a]!.close();
          agents[c.a] = open(AGENTS[c.a]!);
          break;
        case 'restartHub':
          await net.stopHub();
          net.startHub();
          break;
        case 'restartPartition': {
          const partition = partitions.at(-1)!;
          await net.stopHub(partition);
          net.startHub(partition);
          break;
        }
      }
    }

    // Heal: everyone connected, no more duplicates; deliver until the fleet is quiet.
    net.faults = { duplicate: 0, reorderWindow };
    const applied = (a: Agent, partition: string): number =>
      partition === 'default' ? a.status().appliedLsn : (a.status().partitions?.[partition]?.appliedLsn ?? 0);
    // Quiet: nothing in flight or queued, every partition's head applied, and no collection
    // behind what the agent has heard of it (a change set that came after a gap means a pull is due).
    // In the scoped run, also: every bucket of each device's scope (by its labels now) held and
    // applied up to the bucket's head. The partition's watermark moves only with unscoped changes.
    const rules = scopeRules(config?.collections ?? {});
    const memberOf = groupsByMember(config?.access.groups ?? {});
    const bucketsOf = (id: string): Set<string> =>
      new Set(
        rules.collections.flatMap((c) =>
          rules.bucketsOfDevice(c, { agentId: id, labels: labels.get(id) ?? {}, groups: memberOf.get(id) ?? [] }),
        ),
      );
    const scopeApplied = async (a: Agent): Promise<boolean> => {
      if (!scoped(config)) return true;
      const ids = [...bucketsOf(a.id)].map(bucketIdOf);
      const heads = await net.hub!.store.bucketHeads(ids);
      const held = a.status().scope?.buckets ?? {};
      return (
        ids.every((b) => held[b] !== undefined && held[b] >= (heads.get(b) ?? 0) && held[b] >= 0) && Object.keys(held).length === ids.length
      );
    };
    const quiet = async (): Promise<boolean> =>
      net.inFlight === 0 &&
      agents.every(
        (a) =>
          a.status().outboxDepth === 0 &&
          !a.status().catchingUp &&
          Object.values(a.status().collections).every((c) => c.lag === 0) &&
          (scoped(config) || partitions.every((p) => applied(a, p) >= net.hubs.get(p)!.store.head)),
      ) &&
      (await Promise.all(agents.map(scopeApplied))).every(Boolean);
    for (let round = 0; round < 400 && !(await quiet()); round++) {
      for (const id of AGENTS) net.connect(id);
      while (await net.step()) {
        /* drain */
      }
      await sleep(10); // ack and pull timeouts run on real timers
    }
    if (!(await quiet())) {
      const state = agents.map((a) => ({ id: a.id, ...a.status(), inFlight: net.inFlight, head: net.hub!.store.head }));
      expect.fail(`the fleet did not quiesce: ${JSON.stringify(state)}`);
    }

    for (const partition of partitions) {
      const collections = COLLECTIONS.filter((c) => partitionOf(config, c) === partition);
      check(
        join(sqliteDirOf(join(dir, 'hub'), partition), 'hub.db'),
        acknowledged.filter((w) => collections.includes(w.collection as never)),
        agents,
        collections,
        scoped(config),
      );
    }
    // Each replica holds exactly the hub's documents in its device's scope (by its labels now),
    // each at the hub's version: every document of an unscoped collection.
    for (const agent of agents) {
      for (const collection of COLLECTIONS) {
        const replica = await agent.list(collection, { confirmed: true, limit: 100 });
        const hub = net.hubs.get(partitionOf(config, collection))!.store;
        const keys = KEYS.map((_, i) => keyOf(config, collection, i));
        const docs = await Promise.all(keys.map((k) => hub.document(collection, k)));
        const held = new Set(
          rules.bucketsOfDevice(collection, {
            agentId: agent.id,
            labels: labels.get(agent.id) ?? {},
            groups: memberOf.get(agent.id) ?? [],
          }),
        );
        const expected = keys
          .flatMap((k, i) => {
            const doc = docs[i];
            const inScope = !rules.scoped(collection) || rules.holds(collection, k, doc?.value, held);
            return doc && !doc.deleted && inScope ? [{ key: k, value: doc.value, version: doc.version }] : [];
          })
          .sort((x, y) => (x.key < y.key ? -1 : 1));
        expect(
          replica.map(({ key, value, version }) => ({ key, value, version })),
          `${collection} replica of ${agent.id}`,
        ).toEqual(expected);
      }
    }
  } finally {
    await Promise.all(agents.map((a) => a.close()));
    await net.stopHub();
  }
}

/**
 * Reads one partition's database and checks every guarantee against the acknowledged writes of
 * its collections. `scoped`: writes may be refused as out of the writer's scope, and the hub
 * writes too (the register model is then the hub's log, checked for order only).
 */
function check(hubDb: string, acknowledged: Acknowledged[], agents: Agent[], collections: readonly string[], scoped = false): void {
  const db = new Database(hubDb, { readonly: true });
  try {
    const dupes = db
      .prepare('SELECT origin, incarnation, seq, count(*) AS n FROM log WHERE seq IS NOT NULL GROUP BY 1, 2, 3 HAVING n > 1')
      .all();
    expect(dupes, 'an (agent, incarnation, seq) applied twice').toEqual([]);

    const outcome = outcomeReader(db);
    const logged = db.prepare<[string, string, number], { lsn: number }>(
      'SELECT lsn FROM log WHERE origin = ? AND incarnation = ? AND seq = ?',
    );
    const archived = db.prepare<[string, string, number], { n: number }>(
      'SELECT count(*) AS n FROM conflicts WHERE loser_origin = ? AND loser_incarnation = ? AND loser_seq = ?',
    );
    for (const w of acknowledged) {
      const o = outcome(w.agentId, w.inc, w.seq);
      expect(o, `no outcome for ${w.agentId}/${w.seq}`).toBeDefined();
      if (o!.outcome === 'committed') {
        expect(
          logged.all(w.agentId, w.inc, w.seq).map((r) => r.lsn),
          `${w.agentId}/${w.seq} in the log`,
        ).toEqual([o!.lsn]);
      } else if (scoped && o!.outcome === 'rejected') {
        expect(o!.reason, `${w.agentId}/${w.seq} refused`).toBe('out_of_scope');
        expect(logged.all(w.agentId, w.inc, w.seq), `refused ${w.agentId}/${w.seq} not in the log`).toEqual([]);
      } else {
        expect(o!.outcome, `${w.agentId}/${w.seq}`).toBe('conflict');
        expect(archived.get(w.agentId, w.inc, w.seq)!.n, `loser ${w.agentId}/${w.seq} archived`).toBe(1);
      }
    }

    // Each agent's writes appear in the log in the order it made them.
    for (const agent of agents) {
      const seqs = db
        .prepare<[string], { incarnation: string; seq: number }>('SELECT incarnation, seq FROM log WHERE origin = ? ORDER BY lsn')
        .all(agent.id);
      for (let i = 1; i < seqs.length; i++) {
        if (seqs[i]!.incarnation === seqs[i - 1]!.incarnation) expect(seqs[i]!.seq).toBeGreaterThan(seqs[i - 1]!.seq);
      }
    }

    // Reference model: each key is a last-writer-wins register over every acknowledged write.
    const docs = db.prepare<[string, string], { value: Buffer | null; deleted: number }>(
      'SELECT value, deleted FROM documents WHERE collection = ? AND key = ?',
    );
    for (const collection of scoped ? [] : collections) {
      for (const key of KEYS) {
        const writes = acknowledged.filter((w) => w.collection === collection && w.key === key);
        if (writes.length === 0) continue;
        const winner = writes.reduce((a, b) => (b.hlc > a.hlc || (b.hlc === a.hlc && b.agentId > a.agentId) ? b : a));
        const doc = docs.get(collection, key);
        if (winner.del) expect(doc?.deleted ?? 1, `${collection}/${key} deleted`).toBe(1);
        else
          expect(doc && !doc.deleted ? decodeCbor(doc.value!) : undefined, `${collection}/${key} holds the latest write`).toEqual(
            winner.value,
          );
      }
    }
    // Nothing of another partition's collections in this log.
    const strays = db
      .prepare(`SELECT count(*) AS n FROM log WHERE collection NOT IN (${collections.map(() => '?').join(',')})`)
      .get(...collections) as { n: number };
    expect(strays.n, 'log entries of collections of another partition').toBe(0);
  } finally {
    db.close();
  }
}

/** Cases this test once failed on, replayed on every run. */
const REGRESSIONS: Array<[Command[], number, number, number]> = [
  // An agent that applied a change before hearing any hub status, then restarted, took the hub's
  // retained status from its start (head 0) for a restored hub: it took its versions out and
  // resent its queue under a new incarnation, as after a real restore.
  [
    [
      { t: 'write', a: 1, k: 0, del: false, c: 0 },
      { t: 'write', a: 0, k: 0, del: false, c: 0 },
      { t: 'deliver', n: 8 },
      { t: 'restartAgent', a: 0 },
      { t: 'deliver', n: 1 },
      { t: 'deliver', n: 2 },
      { t: 'write', a: 0, k: 0, del: false, c: 0 },
      { t: 'reconnect', a: 0 },
      { t: 'restartHub' },
    ],
    -1268835696,
    0,
    3,
  ],
  // A resync that crossed its ack looked like hub data loss and paused uploads for 30 s.
  [
    [
      { t: 'write', a: 1, k: 1, del: false },
      { t: 'write', a: 0, k: 0, del: false },
      { t: 'deliver', n: 1 },
      { t: 'write', a: 1, k: 0, del: false },
      { t: 'write', a: 0, k: 0, del: false },
    ],
    3,
    0,
    3,
  ],
  [
    [
      { t: 'write', a: 1, k: 0, del: false },
      { t: 'write', a: 1, k: 0, del: false },
      { t: 'deliver', n: 10 },
      { t: 'write', a: 0, k: 0, del: false },
      { t: 'write', a: 0, k: 0, del: false },
      { t: 'deliver', n: 11 },
      { t: 'write', a: 0, k: 0, del: false },
      { t: 'write', a: 0, k: 0, del: false },
      { t: 'restartAgent', a: 0 },
      { t: 'write', a: 0, k: 0, del: false },
      { t: 'restartHub' },
    ],
    -1349814493,
    0.3,
    3,
  ],
  // A duplicated old page was taken for the answer to a newer pull.
  [
    [
      { t: 'deliver', n: 2 },
      { t: 'write', a: 0, k: 0, del: false },
      { t: 'write', a: 0, k: 0, del: false },
      { t: 'write', a: 0, k: 0, del: false },
      { t: 'write', a: 1, k: 0, del: false },
      { t: 'restartAgent', a: 1 },
      { t: 'deliver', n: 1 },
      { t: 'write', a: 0, k: 0, del: false },
      { t: 'deliver', n: 1 },
    ],
    -2031317048,
    0.1,
    8,
  ],
];

/** The scoped run's fixed cases: moves it must always cover, and cases it once failed on. */
const SCOPED_EXAMPLES: typeof REGRESSIONS = [
  // The hub moves a document out of the site its device holds: the device must evict it.
  [
    [
      { t: 'write', a: 0, k: 0, del: false, c: 0, s: 0 },
      { t: 'deliver', n: 30 },
      { t: 'hubWrite', k: 0, s: 1 },
      { t: 'deliver', n: 30 },
    ],
    1,
    0,
    1,
  ],
  // A device relabelled twice: the hub refused its pull of the bucket it had left, and that
  // refusal settled the pull of the bucket it had joined since, which it then never fetched.
  [
    [
      { t: 'deliver', n: 1 },
      { t: 'relabel', a: 0, s: 0 },
      { t: 'relabel', a: 0, s: 1 },
      { t: 'write', a: 0, k: 0, del: false, c: 0, s: 0 },
      { t: 'deliver', n: 1 },
      { t: 'deliver', n: 1 },
    ],
    0,
    0,
    1,
  ],
  // A bucket joined while the hub's log was empty was applied up to 0, which also meant "joined,
  // nothing received": the device waited for it forever.
  [
    [
      { t: 'deliver', n: 1 },
      { t: 'deliver', n: 6 },
      { t: 'write', a: 0, k: 0, del: false, c: 0, s: 0 },
      { t: 'deliver', n: 1 },
      { t: 'deliver', n: 1 },
    ],
    0,
    0,
    1,
  ],
  // The hub put a document in site a and moved it to b; a device joining site a got the `out`
  // first (a gap: it fetched the bucket's snapshot, without the document), then the put, late.
  // The put was below the cursor the snapshot set, and applied: the device kept a document of b.
  [
    [
      { t: 'deliver', n: 4 },
      { t: 'hubWrite', k: 2, s: 0 },
      { t: 'hubWrite', k: 2, s: 1 },
      { t: 'deliver', n: 1 },
      { t: 'relabel', a: 0, s: 0 },
      { t: 'deliver', n: 1 },
      { t: 'relabel', a: 0, s: 0 },
      { t: 'deliver', n: 1 },
    ],
    117,
    0,
    8,
  ],
  // A device left site a and came back while the hub moved a document from a to b: its stored
  // buckets still named a, which the rejoin's snapshot (without the document) never corrected,
  // so the device kept a document of b.
  [
    [
      { t: 'write', a: 0, k: 0, del: false, c: 0, s: 0 },
      { t: 'deliver', n: 30 },
      { t: 'relabel', a: 0, s: 1 },
      { t: 'hubWrite', k: 0, s: 1 },
      { t: 'relabel', a: 0, s: 0 },
      { t: 'deliver', n: 30 },
    ],
    1,
    0,
    1,
  ],
  // The status of the hub's restart reached pi-2 after a change that hub committed later, and
  // after pi-2 restarted, which forgot the newer change's clock: pi-2 took the status for a
  // restore (head 0 below what it had applied) and resent its queue under a new incarnation.
  // (It depends on timing: about one run in four failed.)
  [
    [
      { t: 'deliver', n: 8 },
      { t: 'restartHub' },
      { t: 'hubWrite', k: 0, s: 0 },
      { t: 'deliver', n: 4 },
      { t: 'deliver', n: 1 },
      { t: 'restartAgent', a: 2 },
      { t: 'write', a: 2, k: 0, del: false, c: 0, s: 0 },
      { t: 'write', a: 0, k: 0, del: false, c: 0, s: 0 },
      { t: 'relabel', a: 0, s: 0 },
      { t: 'deliver', n: 1 },
      { t: 'hubWrite', k: 0, s: 0 },
      { t: 'restartHub' },
    ],
    1599911380,
    0,
    8,
  ],
];

/**
 * Runs the property over random command sequences, or only the case in `replayVariable`
 * (`'<counterexample JSON>'`, as fast-check reported it).
 */
async function property(
  config: HubConfig | undefined,
  replayVariable: string,
  runs: number,
  examples: typeof REGRESSIONS,
  timeLimitMs: number,
  commands = command,
): Promise<void> {
  const replay = process.env[replayVariable];
  if (replay) {
    const [commands, seed, duplicate, window] = JSON.parse(replay) as [Command[], number, number, number];
    await run(commands, seed, duplicate, window, config);
    return;
  }
  await fc.assert(
    fc.asyncProperty(
      fc.array(commands, { minLength: 5, maxLength: 40 }),
      fc.integer(),
      fc.constantFrom(0, 0.1, 0.3),
      fc.constantFrom(1, 3, 8),
      async (commands, seed, duplicate, reorderWindow) => run(commands, seed, duplicate, reorderWindow, config),
    ),
    { numRuns: Number(process.env.OUTPOST_MODEL_RUNS ?? runs), interruptAfterTimeLimit: timeLimitMs, examples },
  );
}

describe('the whole protocol against a reference model', () => {
  it('keeps every acknowledged write exactly once and converges, through duplicates, reordering, disconnects and restarts', async () => {
    await property(undefined, 'OUTPOST_MODEL_REPLAY', 200, REGRESSIONS, 240_000);
  }, 300_000);

  it("with partitions: each write exactly once in its own partition's log, through the same faults and one partition's restarts", async () => {
    await property(PARTITIONED, 'OUTPOST_MODEL_PARTITIONED_REPLAY', 120, [], 180_000);
  }, 240_000);

  it("with scopes: each replica holds exactly the hub's documents in its device's scope, through moves, relabels and the same faults", async () => {
    await property(SCOPED, 'OUTPOST_MODEL_SCOPED_REPLAY', 120, SCOPED_EXAMPLES, 180_000, scopedCommand);
  }, 240_000);
});
