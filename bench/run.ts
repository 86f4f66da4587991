/**
 * `npm run bench` (and `-- --quick` for a smoke run): each figure against a reference measured
 * in the same run, printed as one line with its ratio and written to bench/results/ as JSON and
 * Markdown with the machine's cores and memory.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { benchIngest } from './ingest.js';
import { benchWire } from './wire.js';

const quick = process.argv.includes('--quick');
const rows: Array<{ figure: string; value: string; reference: string; ratio: string }> = [];
const line = (figure: string, value: string, reference: string, ratio: number): void => {
  const r = `${ratio.toFixed(2)}×`;
  rows.push({ figure, value, reference, ratio: r });
  process.stdout.write(`${figure}: ${value} — ${reference} — ratio ${r}\n`);
};
const rate = (n: number): string => `${Math.round(n).toLocaleString('en')} writes/s`;

const ingest = await benchIngest(quick);
line('ingest, end to end', rate(ingest.outpost), `raw SQLite limit ${rate(ingest.raw)}`, ingest.outpost / ingest.raw);
line('ingest, end to end', rate(ingest.outpost), `naive JSON-per-message ${rate(ingest.naive)}`, ingest.outpost / ingest.naive);
const wire = await benchWire(quick);
line('wire bytes per telemetry write', `${wire.outpostBytesPerWrite.toFixed(1)} B`, `JSON-per-message MQTT ${wire.naiveBytesPerWrite.toFixed(1)} B`, wire.outpostBytesPerWrite / wire.naiveBytesPerWrite);

const machine = { cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, quick };
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
mkdirSync('bench/results', { recursive: true });
writeFileSync(`bench/results/${stamp}.json`, `${JSON.stringify({ machine, ingest, wire, rows }, null, 2)}\n`);
writeFileSync(`bench/results/${stamp}.md`, [
  `Benchmarks ${quick ? '(quick)' : ''} — ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}`, '',
  '| figure | value | reference (same run) | ratio |', '| --- | --- | --- | --- |',
  ...rows.map((r) => `| ${r.figure} | ${r.value} | ${r.reference} | ${r.ratio} |`), '',
].join('\n'));
process.stdout.write(`results: bench/results/${stamp}.{json,md}\n`);
process.exit(0);
