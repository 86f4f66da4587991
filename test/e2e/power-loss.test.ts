import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentStore } from '../../agent/store/agent-store.js';
import type { FaultPoint } from '../../shared/fault-points.js';
import { TestFleet } from '../helpers/fleet.js';
import { freePort } from '../helpers/ports.js';
import { cutPower, markDurable, NO_C_COMPILER, powerLossEnv, powerLossShim } from '../helpers/power-loss.js';
import { http, OutpostProcess } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';
import { writesOnDisk } from '../helpers/outbox-on-disk.js';
import { MAX_BATCHED } from '../../agent/store/outbox-batches.js';

interface Status {
  connected: boolean;
  outboxDepth: number;
  appliedLsn: number;
}

/**
 * Where the power goes: a stage of a write's life on the device (the agent stops itself there),
 * or wherever the writes are when the test cuts it; online, or offline (the hub down, so that
 * acknowledged writes are nowhere but in the outbox).
 */
type Cut = ({ point: FaultPoint; chance: number } | { afterWrites: number }) & {
  offline?: true;
  /** Writes made at once in each turn of the loop (1: each awaited before the next). */
  perTurn?: number;
};

const CUTS: Array<[string, Cut]> = [
  ['offline, a write just stored in the outbox', { point: 'agent.after-append', chance: 0.03, offline: true }],
  ['offline, wherever the writes are', { afterWrites: 150, offline: true }],
  // More than the outbox keeps as batches: the oldest have become rows (agent/store/outbox-batches.ts).
  ['offline, past what the outbox holds as batches', { afterWrites: MAX_BATCHED.writes + 300, perTurn: 100, offline: true }],
  ['a write just stored in the outbox', { point: 'agent.after-append', chance: 0.03 }],
  ["the hub's outcomes just recorded", { point: 'agent.after-ack', chance: 0.05 }],
  ['a change set just applied', { point: 'agent.after-apply', chance: 0.05 }],
  ['a page of the catch-up just applied', { point: 'agent.after-apply', chance: 0.5 }],
  ['wherever the writes are', { afterWrites: 150 }],
];

/** Writes the sensor loop makes at most before the test cuts the power itself. */
const MAX_WRITES = 400;

/** Documents another device wrote before this one starts (online cases): it catches up on them by pages, each with its watermark. */
const EARLIER = 3_000;

const shim = powerLossShim();

/**
 * A power cut keeps only what was fsynced (test/helpers/power-loss.ts). The agent fsyncs only
 * the device's own writes; what the hub can give back (acks, applied change sets, watermarks)
 * may be taken back, each commit whole. After a cut at each stage of a write's life:
 * - every write the agent acknowledged (`local` durability) is still in its outbox or committed;
 * - the watermark does not run ahead of the rows it covers;
 * and once the agent is back, every write is committed exactly once and the replica equals the hub.
 */
describe.skipIf(!shim && !process.env.CI)(`a power cut on the device${shim ? '' : ` (skipped: ${NO_C_COMPILER})`}`, () => {
  let fleet: TestFleet;
  const running: OutpostProcess[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.kill()));
    await fleet?.close();
  });

  for (const [stage, cut] of CUTS) {
    it(`takes back only what the hub gives back: ${stage}`, { timeout: 60_000 }, async () => {
      fleet = new TestFleet();
      await fleet.startHub();
      if (cut.offline) {
        await fleet.stopHub(); // its port stays the fleet's: the agent keeps trying it
      } else {
        const other = fleet.agent('pi-other', { collections: ['none'] });
        await Promise.all(Array.from({ length: EARLIER }, (_, i) => other.put('earlier', `e-${i}`, { i })));
        await waitFor("the other device's writes committed", () => fleet.hub!.store.head >= EARLIER);
      }
      const data = join(fleet.dir, 'pi');
      // The device as it was after its first clean start: its database exists and is on disk.
      new AgentStore(data).close();
      markDurable(data);

      const httpPort = await freePort();
      const api = `http://127.0.0.1:${httpPort}`;
      const args = ['agent', '--hub', `mqtt://127.0.0.1:${fleet.port}`, '--id', 'pi', '--data', data, '--http', `127.0.0.1:${httpPort}`];
      const faults: Record<string, string> = 'point' in cut ? { OUTPOST_FAULT_POINTS: `${cut.point}:${cut.chance}` } : {};
      const agent = new OutpostProcess(args, { ...powerLossEnv(data), ...faults });
      running.push(agent);
      // Offline it cannot connect: that it answers is enough. Catching up, the fault point may
      // stop it (SIGKILL, by its own hand) before it is seen connected: that is the cut wanted.
      await waitFor(
        cut.offline ? 'the agent serving its API' : 'the agent connected',
        async () => {
          if ('point' in cut && agent.child.signalCode === 'SIGKILL') return true;
          const status = (await http<Status>('GET', `${api}/v1/status`).catch(() => undefined))?.body;
          return cut.offline ? status !== undefined : (status?.connected ?? false);
        },
        30_000, // a process starting on a machine busy with other suites
      );

      // A sensor loop: each write awaited; those answered 200 were acknowledged as stored.
      const acknowledged: number[] = [];
      const limit = 'afterWrites' in cut ? cut.afterWrites : MAX_WRITES;
      const perTurn = cut.perTurn ?? 1;
      for (let i = 0; i < limit; i += perTurn) {
        const turn = Array.from({ length: Math.min(perTurn, limit - i) }, (_, j) => i + j);
        const answers = await Promise.all(
          turn.map((w) =>
            http('PUT', `${api}/v1/docs/readings/w-${w}`, { i: w }).then(
              (a) => a.status,
              () => undefined,
            ),
          ),
        );
        turn.forEach((w, j) => answers[j] === 200 && acknowledged.push(w));
        if (answers.some((status) => status !== 200)) break; // the agent stopped itself at the fault point
      }
      if ('afterWrites' in cut) expect(acknowledged).toHaveLength(cut.afterWrites);
      await cutPower(agent.child, data);
      const hub = cut.offline ? await fleet.startHub() : fleet.hub!;

      // The files as the power cut left them, before the agent opens them again.
      const db = new Database(join(data, 'agent.db'));
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      // Past what the batches hold, some writes have become rows: that form is what this case is for.
      if (perTurn > 1) expect((db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n).toBeGreaterThan(0);
      const queued = new Set(
        writesOnDisk(db)
          .filter((w) => w.collection === 'readings')
          .map((w) => w.key),
      );
      // Nothing left the device: each acknowledged write is in the outbox (and at most the one the cut interrupted besides).
      if (cut.offline) expect(acknowledged.filter((i) => !queued.has(`w-${i}`))).toEqual([]);
      for (const i of acknowledged) {
        const key = `w-${i}`;
        if (!queued.has(key))
          expect(await hub.store.document('readings', key), `${key} was acknowledged: queued or committed`).toBeDefined();
      }
      // The watermark (the whole log applied up to it) and each collection's cursor cover only rows the replica holds.
      const watermark = Number(
        (db.prepare("SELECT value FROM meta WHERE name = 'watermark'").get() as { value: string } | undefined)?.value ?? 0,
      );
      const cursors = new Map(
        (
          db.prepare('SELECT collection, applied_lsn FROM collections WHERE applied_lsn IS NOT NULL').all() as Array<{
            collection: string;
            applied_lsn: number;
          }>
        ).map((r) => [r.collection, r.applied_lsn]),
      );
      const versionOf = db.prepare('SELECT version FROM documents WHERE collection = ? AND key = ?').pluck();
      const log = await hub.store.readLog(0, undefined, 100_000, 1e9);
      for (const change of log.changes) {
        const covered = Math.max(watermark, cursors.get(change.c) ?? 0);
        if (change.lsn > covered) continue;
        const held = (versionOf.get(change.c, change.k) as number | undefined) ?? 0;
        expect(held, `${change.c}/${change.k} at ${change.lsn}, covered up to ${covered}`).toBeGreaterThanOrEqual(change.lsn);
      }
      if ('point' in cut && cut.point === 'agent.after-ack') {
        // The ack's commit was not fsynced and nothing came after it: the writes it answered are queued again.
        const committed = await Promise.all([...queued].map(async (key) => (await hub.store.document('readings', key)) !== undefined));
        expect(committed).toContain(true);
      }
      db.close();

      // Back on: what was taken back comes again from the hub, and the re-sent writes are not committed twice.
      const back = new OutpostProcess(args);
      running.push(back);
      await waitFor(
        'the agent drained its outbox and caught up',
        async () => {
          const status = (await http<Status>('GET', `${api}/v1/status`).catch(() => undefined))?.body;
          return status?.outboxDepth === 0 && status.appliedLsn === hub.store.head;
        },
        30_000,
      );
      const after = await hub.store.readLog(0, undefined, 100_000, 1e9);
      const keys = after.changes.map((c) => `${c.c}/${c.k}`);
      expect(new Set(keys).size, 'each write committed once').toBe(keys.length);
      for (const i of acknowledged) expect(keys).toContain(`readings/w-${i}`);
      await back.kill('SIGTERM');
      const replica = new Database(join(data, 'agent.db'), { readonly: true });
      const held = replica.prepare('SELECT value, version FROM documents WHERE collection = ? AND key = ?');
      for (const change of after.changes) {
        const row = held.get(change.c, change.k) as { value: Buffer; version: number } | undefined;
        expect(row?.version, `${change.c}/${change.k}`).toBe(change.lsn);
        expect(Buffer.compare(row!.value, Buffer.from(change.v as Uint8Array)), `${change.c}/${change.k}`).toBe(0);
      }
      replica.close();
    });
  }
});
