/**
 * Footprint of an idle agent: resident memory and CPU of a real `outpost agent` process whose
 * replica holds 100k documents and whose outbox holds 10k pending writes, offline (hub down), after
 * it has settled. Run: npm run build && tsx bench/footprint.ts
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentStore } from '../agent/store.js';
import { encodeHlc, type Hlc } from '../shared/hlc.js';
import type { Change } from '../shared/messages.js';

const DOCS = Number(process.env.DOCS ?? 100_000);
const PENDING = Number(process.env.PENDING ?? 10_000);
const dir = mkdtempSync(join(tmpdir(), 'outpost-footprint-'));
const store = new AgentStore(join(dir, 'agent'));
const hlc = (i: number): Hlc => encodeHlc(1_700_000_000_000 + i, 0);
for (let from = 0; from < DOCS; from += 5000) {
  const changes: Change[] = [];
  for (let i = from; i < Math.min(DOCS, from + 5000); i++) {
    changes.push({ lsn: i + 1, c: 'readings', k: `sensor-${i}`, op: 'put', v: { celsius: 20 + (i % 100) / 10, at: i }, hlc: hlc(i), o: 'pi-other' });
  }
  store.applyChanges(changes, Math.min(DOCS, from + 5000));
}
for (let from = 0; from < PENDING; from += 1000) {
  store.appendWrites(Array.from({ length: Math.min(1000, PENDING - from) }, (_, i) => ({
    collection: 'telemetry', key: `t-${from + i}`, op: 'put' as const, value: { v: from + i }, hlc: hlc(DOCS + from + i),
  })), hlc(DOCS + from + 1000));
}
const dbBytes = store.databaseBytes();
store.close();

const child = spawn(process.execPath, [...(process.env.NODE_FLAGS?.split(' ').filter(Boolean) ?? []), 'dist/cli/outpost.js', 'agent', '--hub', 'mqtt://127.0.0.1:1', '--id', 'pi-footprint',
  '--data', join(dir, 'agent'), '--http', '127.0.0.1:0', '--log-level', 'warn'], { stdio: 'ignore' });
await new Promise((resolve) => setTimeout(resolve, 15_000)); // settle: start-up, GC, reconnect attempts
const sample = async (): Promise<{ rssKb: number; cpuTicks: number }> => {
  const { readFileSync } = await import('node:fs');
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { rssKb: Number(/VmRSS:\s+(\d+)/.exec(status)![1]), cpuTicks: Number(stat[11]) + Number(stat[12]) };
};
const a = await sample();
await new Promise((resolve) => setTimeout(resolve, 10_000));
const b = await sample();
child.kill('SIGTERM');
rmSync(dir, { recursive: true, force: true });
const cpuPercent = ((b.cpuTicks - a.cpuTicks) / 100 / 10) * 100;
process.stdout.write(`idle agent, ${DOCS} documents, ${PENDING} pending writes, database ${(dbBytes / 1048576).toFixed(1)} MiB: ` +
  `resident ${(b.rssKb / 1024).toFixed(1)} MiB, CPU ${cpuPercent.toFixed(2)} % of one core over 10 s\n`);
