import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/temp.js';
import { CI_SCHEDULE, FAULT_KINDS, runChaos } from './run.js';

describe('chaos, CI profile: real processes, injected faults, a checker that reads the history', () => {
  it('loses nothing, duplicates nothing (blobs included), converges and delivers nothing outside scope through kills, crashes, partitions and relabels', async () => {
    const seed = Number(process.env.OUTPOST_CHAOS_SEED ?? 20261125);
    const result = await runChaos({
      dir: tempDir('chaos'),
      agents: 3,
      durationMs: 40_000,
      seed,
      faultEveryMs: 1_500,
      writeEveryMs: 40,
      schedule: CI_SCHEDULE,
      log: (line) => process.env.OUTPOST_CHAOS_VERBOSE && process.stderr.write(`${line}\n`),
    });
    process.stdout.write(`${result.summary} ${JSON.stringify(result.scoped)}\n`);
    expect(result.faults).toBeGreaterThanOrEqual(CI_SCHEDULE.length); // every kind at least once
    expect(new Set(CI_SCHEDULE)).toEqual(new Set(FAULT_KINDS));
    expect(result.verdict.acknowledged).toBeGreaterThan(100);
    // Blobs went through the same faults, each checked by its content's hash (blobs.ts).
    expect(result.verdict.blobs).toBeGreaterThan(10);
    // The scoped workload ran: writes outside scope were refused, the hub moved documents, an
    // operator relabelled, and the listeners heard scoped changes (a spy that heard nothing proves nothing).
    expect(result.verdict.scopeRefused).toBeGreaterThan(0);
    expect(result.scoped.hubWrites).toBeGreaterThan(0);
    expect(result.scoped.relabels).toBeGreaterThanOrEqual(2);
    expect(result.scoped.linkHeard).toBeGreaterThan(0);
    expect(result.scoped.spyWindows).toBeGreaterThan(0);
    expect(result.scoped.spyHeard).toBeGreaterThan(0);
    // The crash points were really reached: the hub died inside a commit, not by our hand.
    expect(result.faultLog.filter((f) => f.startsWith('crash-')).every((f) => f.endsWith('(died there)'))).toBe(true);
    expect(result.verdict, result.summary).toMatchObject({
      lost: [],
      duplicated: [],
      misordered: [],
      diverged: [],
      wrongOutcome: [],
      corrupt: [],
      regressions: [],
      outsideScope: [],
      undetectedRot: [],
    });
    expect(result.verdict.rots).toBeGreaterThan(0);
  }, 300_000);
});
