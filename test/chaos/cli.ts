import { Command } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAULT_KINDS, runChaos, type FaultKind } from './run.js';

/** `npm run chaos -- --minutes 10 --agents 10 --seed 42`: a long soak of real processes under faults. */
const program = new Command('chaos')
  .option('--minutes <n>', 'how long to write and inject faults', Number, 2)
  .option('--agents <n>', 'agent processes', Number, 5)
  .option('--seed <n>', 'seed for faults and workload', Number, Date.now() % 1_000_000)
  .option('--fault-every <ms>', 'mean time between faults', Number, 5000)
  .option('--keep', 'keep the data directory')
  .option('--faults <kinds>', `inject only these kinds (comma-separated, of ${FAULT_KINDS.join(', ')})`)
  .parse();
const opts = program.opts<{ minutes: number; agents: number; seed: number; faultEvery: number; keep?: boolean; faults?: string }>();
const kinds = opts.faults?.split(',').map((k) => k.trim()) as FaultKind[] | undefined;
const unknown = kinds?.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k)) ?? [];
if (unknown.length > 0 || kinds?.length === 0)
  program.error(`unknown fault kinds: ${unknown.join(', ')} (known: ${FAULT_KINDS.join(', ')})`);
const dir = mkdtempSync(join(tmpdir(), 'outpost-chaos-'));
const result = await runChaos({
  dir,
  agents: opts.agents,
  durationMs: opts.minutes * 60_000,
  seed: opts.seed,
  faultEveryMs: opts.faultEvery,
  writeEveryMs: 40,
  ...(kinds && { kinds }),
  log: (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
});
if (!result.ok) process.stderr.write(`${JSON.stringify(result.verdict, null, 2)}\ndata kept in ${dir}\n`);
else if (!opts.keep) rmSync(dir, { recursive: true, force: true });
process.stdout.write(`${result.summary}\n`);
process.exit(result.ok ? 0 : 1);
