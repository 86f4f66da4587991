import { Command } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChaos } from './run.js';

/** `npm run chaos -- --minutes 10 --agents 10 --seed 42`: a long soak of real processes under faults. */
const program = new Command('chaos')
  .option('--minutes <n>', 'how long to write and inject faults', Number, 2)
  .option('--agents <n>', 'agent processes', Number, 5)
  .option('--seed <n>', 'seed for faults and workload', Number, Date.now() % 1_000_000)
  .option('--fault-every <ms>', 'mean time between faults', Number, 5000)
  .option('--keep', 'keep the data directory')
  .parse();
const opts = program.opts<{ minutes: number; agents: number; seed: number; faultEvery: number; keep?: boolean }>();
const dir = mkdtempSync(join(tmpdir(), 'outpost-chaos-'));
const result = await runChaos({
  dir,
  agents: opts.agents,
  durationMs: opts.minutes * 60_000,
  seed: opts.seed,
  faultEveryMs: opts.faultEvery,
  writeEveryMs: 40,
  log: (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
});
if (!result.ok) process.stderr.write(`${JSON.stringify(result.verdict, null, 2)}\ndata kept in ${dir}\n`);
else if (!opts.keep) rmSync(dir, { recursive: true, force: true });
process.stdout.write(`${result.summary}\n`);
process.exit(result.ok ? 0 : 1);
