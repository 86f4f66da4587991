/**
 * `npm run bench` (and `-- --quick` for a smoke run): each figure against a reference measured
 * in the same run, printed as one line with its ratio and written to bench/results/ as JSON and
 * Markdown with the machine's cores and memory.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { BACKLOG_TARGET, benchBacklog, type BacklogResult } from './backlog.js';
import { benchBlobs, type BlobsResult } from './blobs.js';
import { benchCatchup, type CatchupResult } from './catchup.js';
import { benchContentStores, type ContentStoresResult } from './content-stores.js';
import { benchDedupState, type DedupStateResult } from './dedup-state.js';
import { benchDigestCost, type DigestCostResult } from './digest-cost.js';
import { benchFanin, type FaninResult } from './fanin.js';
import { benchFlash, FLASH_TARGET, type FlashResult } from './flash.js';
import { FLEET_RATE } from './fleet-measure.js';
import { benchFleet, RSS_TARGET_BYTES, STORM_TARGET_SECONDS, type FleetResult } from './fleet.js';
import { benchFleetMosquitto, type FleetMosquittoResult } from './fleet-mosquitto.js';
import { benchFootprint, mb, TARGET_BYTES, type FootprintResult } from './footprint.js';
import { benchIngest, type IngestResult } from './ingest.js';
import { benchPartitions, type PartitionsResult } from './partitions.js';
import { mib } from './proc-stats.js';
import { benchPropagation, type PropagationResult } from './propagation.js';
import { benchRelabel, type RelabelResult } from './relabel.js';
import { benchRepair, type RepairResult } from './repair.js';
import { benchScopedRepair, type ScopedRepairResult } from './repair-scoped.js';
import { benchScopeFanout, exact, type ScopeFanoutResult } from './scope-fanout.js';
import { benchWire, type WireResult } from './wire.js';

const quick = process.argv.includes('--quick');
const rows: Array<{ figure: string; value: string; reference: string; ratio: string }> = [];
const line = (figure: string, value: string, reference: string, ratio: number): void => {
  const r = `${ratio.toFixed(2)}×`;
  rows.push({ figure, value, reference, ratio: r });
  process.stdout.write(`${figure}: ${value} — ${reference} — ratio ${r}\n`);
};
const count = (n: number): string => Math.round(n).toLocaleString('en');
const rate = (n: number, unit = 'writes'): string => `${count(n)} ${unit}/s`;
const kb = (n: number): string => `${(n / 1000).toFixed(1)} kB`;
const pct = (share: number): string => `${(share * 100).toFixed(1)} % of one core`;
const ms = (n: number): string => `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`;

async function ingest(): Promise<IngestResult> {
  const r = await benchIngest(quick);
  line('ingest, end to end', rate(r.outpost), `raw SQLite limit ${rate(r.raw)}`, r.outpost / r.raw);
  line('ingest, end to end', rate(r.outpost), `naive JSON-per-message ${rate(r.naive)}`, r.outpost / r.naive);
  return r;
}

async function wire(): Promise<WireResult> {
  const r = await benchWire(quick);
  line(
    'wire bytes per telemetry write',
    `${r.outpostBytesPerWrite.toFixed(1)} B`,
    `JSON-per-message MQTT ${r.naiveBytesPerWrite.toFixed(1)} B`,
    r.outpostBytesPerWrite / r.naiveBytesPerWrite,
  );
  return r;
}

async function propagation(): Promise<PropagationResult> {
  const r = await benchPropagation(quick);
  for (const p of ['p50', 'p99', 'max'] as const) {
    line(
      `propagation ${p}, A's put → B's change event (${rate(r.rate)})`,
      ms(r.outpost[p]),
      `bare aedes, two MQTT.js clients, QoS 1: ${ms(r.floor[p])}`,
      r.outpost[p] / r.floor[p],
    );
  }
  return r;
}

async function catchup(): Promise<CatchupResult> {
  const r = await benchCatchup(quick);
  line(
    `catch-up after offline (${count(r.changes)} changes)`,
    rate(r.catchup, 'changes'),
    `raw SQLite apply ${rate(r.rawCatchup, 'rows')}`,
    r.catchup / r.rawCatchup,
  );
  line(
    `replica apply alone, catch-up's ceiling (${count(r.changes)} changes, pages of 1,000, no link)`,
    rate(r.replicaApply, 'changes'),
    `raw SQLite apply ${rate(r.rawCatchup, 'rows')}`,
    r.replicaApply / r.rawCatchup,
  );
  line(
    `bootstrap by snapshot (${count(r.docs)} documents)`,
    rate(r.bootstrap, 'documents'),
    `raw SQLite apply ${rate(r.rawBootstrap, 'rows')}`,
    r.bootstrap / r.rawBootstrap,
  );
  return r;
}

async function flash(): Promise<FlashResult> {
  const r = await benchFlash(quick);
  // Two decimals: at 100 writes a commit the figures are a fraction of a kB.
  const size = (bytes: number): string => `${(bytes / 1000).toFixed(2)} kB`;
  const { agentBytesPerWrite: agent, floorBytesPerWrite: floor, hubBytesPerWrite: hub } = r;
  line(
    'flash: agent disk bytes per app write, one at a time',
    `${size(agent.single)} (target ≤ ${FLASH_TARGET.single}×; ${count(r.writes.single)} writes)`,
    `SQLite floor, one fsynced commit a write: ${size(floor.single)}`,
    agent.single / floor.single,
  );
  line(
    'flash: agent disk bytes per app write, 100 at a time',
    `${size(agent.batched)} (target ≤ ${FLASH_TARGET.batched}×; ${count(r.writes.batched)} writes)`,
    `SQLite floor, 100 rows a commit: ${size(floor.batched)}`,
    agent.batched / floor.batched,
  );
  line(
    'flash: agent disk bytes per app write, one a second',
    `${size(agent.paced)} (no target; ${count(r.writes.paced)} writes, each key already held)`,
    `SQLite floor, one fsynced commit a write: ${size(floor.single)}`,
    agent.paced / floor.single,
  );
  line(
    'flash: hub disk bytes per committed write (100 at a time)',
    `${size(hub.batched)} (one at a time: ${size(hub.single)})`,
    `SQLite floor, 100 rows a commit: ${size(floor.batched)}`,
    hub.batched / floor.batched,
  );
  // Not a ratio: the reference is nothing written at all.
  process.stdout.write(`flash: idle agent disk bytes in ${r.idleSeconds} s, connected, nothing written: ${count(r.idleAgentBytes)} B\n`);
  return r;
}

async function fanin(): Promise<FaninResult> {
  const r = await benchFanin(quick);
  const agents = `${count(r.agents)} agents`;
  line(
    `fan-in, hub RSS with ${agents} under load`,
    mib(r.hubRssLoaded),
    `same hub idle, no agents: ${mib(r.hubRssIdle)}`,
    r.hubRssLoaded / r.hubRssIdle,
  );
  line(
    `fan-in, hub CPU per commit (${agents})`,
    `${ms(r.cpuMsPerCommit)} (${(r.hubCpuShare * 100).toFixed(1)} % of one core)`,
    `single agent: ${ms(r.refCpuMsPerCommit)}`,
    r.cpuMsPerCommit / r.refCpuMsPerCommit,
  );
  line(`fan-in, p99 commit-ack latency (${agents})`, ms(r.p99Ms), `single agent: ${ms(r.refP99Ms)}`, r.p99Ms / r.refP99Ms);
  line(
    `fan-in, keeps up (${agents})`,
    rate(r.committedPerSecond, 'commits'),
    `offered ${rate(r.offeredPerSecond)}`,
    r.committedPerSecond / r.offeredPerSecond,
  );
  if (r.failed > 0) process.stdout.write(`fan-in: ${r.failed} writes failed or timed out\n`);
  return r;
}

async function partitions(): Promise<PartitionsResult | undefined> {
  const r = await benchPartitions(quick);
  if (!r) {
    process.stdout.write('partitions: skipped, mosquitto is not installed (apt-get install mosquitto)\n');
    return undefined;
  }
  line(
    'ingest over two partitions, one hub process per partition',
    rate(r.twoProcesses),
    `one hub process leading both: ${rate(r.oneProcess)}`,
    r.twoProcesses / r.oneProcess,
  );
  line(
    'CPU of the busiest leading hub per 1,000 writes, one process per partition',
    ms(r.twoProcessesCpuMs),
    `one hub process leading both: ${ms(r.oneProcessCpuMs)}`,
    r.twoProcessesCpuMs / r.oneProcessCpuMs,
  );
  return r;
}

async function footprint(): Promise<FootprintResult> {
  const r = await benchFootprint(quick);
  line(
    `idle agent RSS (${count(r.docs)} documents, ${count(r.pending)} pending)`,
    `${mb(r.agentRss)} (target ${mb(TARGET_BYTES)}; CPU ${(r.agentCpu * 100).toFixed(2)} % of one core)`,
    `bare node process: ${mb(r.bareRss)}`,
    r.agentRss / r.bareRss,
  );
  return r;
}

async function backlog(): Promise<BacklogResult> {
  const r = await benchBacklog(quick);
  line(
    `drain of a ${count(r.large.writes)}-write backlog after offline`,
    `${rate(r.large.rate)} (target ≥ ${BACKLOG_TARGET.rateRatio}× the small backlog's)`,
    `a ${count(r.small.writes)}-write backlog: ${rate(r.small.rate)}`,
    r.large.rate / r.small.rate,
  );
  line(
    `agent peak RSS draining ${count(r.large.writes)} writes`,
    `${mb(r.large.peakRssBytes)} (target ≤ ${mb(BACKLOG_TARGET.rssBytes)})`,
    `draining ${count(r.small.writes)}: ${mb(r.small.peakRssBytes)}`,
    r.large.peakRssBytes / r.small.peakRssBytes,
  );
  return r;
}

async function dedupState(): Promise<DedupStateResult> {
  const r = await benchDedupState(quick);
  const state = (s: { rows: number; bytes: number }): string => `${count(s.rows)} rows, ${mb(s.bytes)}`;
  line(
    `hub dedup state after ${count(r.writes)} writes (retention keeps ${count(r.retainedEntries)} log entries)`,
    state(r.pruned),
    `the log alone pruned (before): ${state(r.logOnly)}`,
    r.pruned.bytes / r.logOnly.bytes,
  );
  return r;
}

async function scopeFanout(): Promise<ScopeFanoutResult> {
  const r = await benchScopeFanout(quick);
  const { fleet, reference: ref } = r;
  line(
    `scoped delivery, hub CPU per committed change (${count(fleet.devices)} devices online, ${rate(r.rate, 'changes')})`,
    `${ms(fleet.cpuMsPerChange)} (${pct(fleet.loadCpuShare)})`,
    `${count(ref.devices)} devices online: ${ms(ref.cpuMsPerChange)} (${pct(ref.loadCpuShare)})`,
    fleet.cpuMsPerChange / ref.cpuMsPerChange,
  );
  // Not a ratio: with 100 devices the hub's idle CPU is often below what /proc can tell in a quick run.
  process.stdout.write(
    `scoped delivery, hub CPU with nothing written: ${pct(fleet.idleCpuShare)} with ${count(fleet.devices)} devices online, ${pct(ref.idleCpuShare)} with ${count(ref.devices)}\n`,
  );
  const wrong = [ref, fleet].filter((w) => !exact(w.deliveries));
  const told = [ref, fleet].map(
    (w) => `${count(w.deliveries.delivered)} of ${count(w.deliveries.changes)} with ${count(w.devices)} online`,
  );
  if (wrong.length === 0) {
    process.stdout.write(`scoped delivery: every change reached exactly its own device (${told.join(', ')})\n`);
    return r;
  }
  const facts = wrong.map((w) => `with ${count(w.devices)} online: ${JSON.stringify(w.deliveries)}`).join('; ');
  throw new Error(`scoped delivery: changes did not reach exactly their own device — ${facts}`);
}

const counts = (tally: Record<string, number>): string =>
  Object.entries(tally)
    .map(([why, n]) => `${count(n)} ${why}`)
    .join(', ') || 'none';

async function fleet(): Promise<FleetResult> {
  const r = await benchFleet(quick);
  const { sizes, storm } = r;
  const devices = `${count(sizes.devices)} devices`;
  line(
    `fleet, hub RSS per connected device (${devices}, idle)`,
    `${kb(r.rssPerDevice.hub!)} (target ≤ ${kb(RSS_TARGET_BYTES)}; ${mib(r.rssFleet.hub!)} in all)`,
    `the same hub with ${count(sizes.reference)} devices: ${mib(r.rssReference.hub!)}`,
    r.rssFleet.hub! / r.rssReference.hub!,
  );
  line(
    `fleet, hub CPU with ${devices} connected, nothing written`,
    pct(r.idleCpuShare.hub!),
    `the same fleet writing ${rate(FLEET_RATE)}: ${pct(r.fleet.cpuShare.hub!)}`,
    r.idleCpuShare.hub! / r.fleet.cpuShare.hub!,
  );
  line(
    `fleet, p99 commit-ack latency at ${rate(FLEET_RATE)} (${devices})`,
    `${ms(r.fleet.latency.p99)} (p50 ${ms(r.fleet.latency.p50)})`,
    `${count(sizes.reference)} devices: ${ms(r.reference.latency.p99)}`,
    r.fleet.latency.p99 / r.reference.latency.p99,
  );
  line(
    `fleet, reconnect storm after a hub restart (${devices}, tokens hashed at ${r.tokens === 'hub' ? "the hub's cost" : 'no cost'})`,
    `${storm.seconds.toFixed(1)} s until every device resumed (target ≤ ${STORM_TARGET_SECONDS} s; hub down ${storm.downSeconds.toFixed(1)} s, ${storm.stopSeconds.toFixed(1)} s of it stopping)`,
    `connecting ${count(sizes.devices - sizes.reference)} of them at first: ${r.connectSeconds.toFixed(1)} s`,
    storm.seconds / r.connectSeconds,
  );
  process.stdout.write(
    `fleet, the storm: ${count(storm.attempts)} connection attempts; refused while the hub was down: ${counts(storm.refusedWhileDown)}; ` +
      `after: ${counts(storm.refusals)}; shed by the hub: ${counts(storm.hubShed)}; accept-queue overflows (machine-wide) ${count(storm.listenOverflows)}; hub CPU ${pct(storm.hubCpuShare)}\n`,
  );
  const odd = { ...r.connectRefusals, ...storm.unexpected };
  if (r.fleet.failed + r.fleet.unacked + Object.keys(storm.unexpected).length > 0)
    throw new Error(`fleet: writes failed or unacked, or unexpected messages: ${JSON.stringify({ fleet: r.fleet, odd })}`);
  return r;
}

async function fleetMosquitto(embedded: FleetResult): Promise<FleetMosquittoResult | undefined> {
  const r = await benchFleetMosquitto(quick);
  if (!r) {
    process.stdout.write('fleet behind Mosquitto: skipped, mosquitto is not installed (apt-get install mosquitto)\n');
    return undefined;
  }
  const devices = `${count(r.sizes.devices)} devices`;
  const both = (p: Record<string, number>): number => p.hub! + p.broker!;
  line(
    `fleet behind Mosquitto, RSS per connected device, hub + Mosquitto (${devices})`,
    `${kb(both(r.rssPerDevice))} (Mosquitto ${kb(r.rssPerDevice.broker!)})`,
    `embedded broker: ${kb(embedded.rssPerDevice.hub!)}`,
    both(r.rssPerDevice) / embedded.rssPerDevice.hub!,
  );
  line(
    `fleet behind Mosquitto, CPU with ${devices} connected, nothing written, hub + Mosquitto`,
    `${pct(both(r.idleCpuShare))} (Mosquitto ${pct(r.idleCpuShare.broker!)})`,
    `embedded broker: ${pct(embedded.idleCpuShare.hub!)}`,
    both(r.idleCpuShare) / embedded.idleCpuShare.hub!,
  );
  line(
    `fleet behind Mosquitto, p99 commit-ack latency at ${rate(FLEET_RATE)} (${devices})`,
    `${ms(r.fleet.latency.p99)} (p50 ${ms(r.fleet.latency.p50)}; CPU hub ${pct(r.fleet.cpuShare.hub!)}, Mosquitto ${pct(r.fleet.cpuShare.broker!)})`,
    `embedded broker: ${ms(embedded.fleet.latency.p99)} (hub ${pct(embedded.fleet.cpuShare.hub!)})`,
    r.fleet.latency.p99 / embedded.fleet.latency.p99,
  );
  if (r.fleet.failed + r.fleet.unacked > 0) throw new Error(`fleet behind Mosquitto: writes failed or unacked: ${JSON.stringify(r.fleet)}`);
  return r;
}

/** The fleet on the embedded broker, then behind Mosquitto (compared with the first). */
async function fleets(): Promise<{ embedded: FleetResult; mosquitto: FleetMosquittoResult | undefined }> {
  const embedded = await fleet();
  return { embedded, mosquitto: await fleetMosquitto(embedded) };
}

async function relabel(): Promise<RelabelResult> {
  const r = await benchRelabel(quick);
  line(
    `relabel berlin → paris, bytes to the device (${count(r.perSite)} documents a site, ${count(r.shared)} in both)`,
    `${kb(r.moveBytes)} (${count(r.moveDocs)} documents sent; it lacked ${count(r.perSite - r.shared)})`,
    `a new paris device syncing from nothing: ${kb(r.freshBytes)} (${count(r.freshDocs)} documents)`,
    r.moveBytes / r.freshBytes,
  );
  return r;
}

async function digestCost(): Promise<DigestCostResult> {
  const r = await benchDigestCost(quick);
  line(
    `hub CPU per committed change with content digests (${count(r.changes)} changes)`,
    `${(r.withDigests * 1000).toFixed(1)} µs (target ≤ 1.1×)`,
    `digests off: ${(r.without * 1000).toFixed(1)} µs`,
    r.withDigests / r.without,
  );
  return r;
}

async function repair(): Promise<RepairResult> {
  const r = await benchRepair(quick);
  line(
    `range repair of ${r.damaged} damaged documents of ${count(r.docs)}, link bytes`,
    `${kb(r.repairBytes)} (${count(r.repairedDocs)} documents rewritten or removed; target ≤ 0.01×)`,
    `bootstrap by snapshot: ${kb(r.snapshotBytes)}`,
    r.repairBytes / r.snapshotBytes,
  );
  const { scrub } = r;
  line(
    `scrub of that replica, rows read a minute (full pass ${scrub.fullPassMinutes.toFixed(1)} min, CPU ${ms(scrub.cpuMsPerMinute)} a minute)`,
    `${(scrub.bytesPerMinute / 2 ** 20).toFixed(2)} MiB/min`,
    `its budget: ${(scrub.budgetPerMinute / 2 ** 20).toFixed(2)} MiB/min`,
    scrub.bytesPerMinute / scrub.budgetPerMinute,
  );
  return r;
}

async function blobs(): Promise<BlobsResult> {
  const r = await benchBlobs(quick);
  const mbps = (n: number): string => `${n.toFixed(1)} MB/s`;
  line(
    `blob upload (${(r.bytes / 1024 / 1024).toFixed(0)} MiB)`,
    mbps(r.outpostMBps),
    `raw MQTT QoS 1 ${mbps(r.rawMBps)}`,
    r.outpostMBps / r.rawMBps,
  );
  const { devices, imageBytes, publishedBytes } = r.fanOut;
  line(
    `firmware to ${devices} devices (${(imageBytes / 1024 / 1024).toFixed(0)} MiB)`,
    `${(publishedBytes / 1e6).toFixed(1)} MB published by the hub`,
    `${devices} separate downloads ${((devices * imageBytes) / 1e6).toFixed(1)} MB`,
    publishedBytes / (devices * imageBytes),
  );
  return r;
}

async function contentStores(): Promise<ContentStoresResult | undefined> {
  const r = await benchContentStores(quick);
  if (!r) {
    process.stdout.write('blob content stores: skipped, PostgreSQL is not reachable (pg_ctlcluster 15 main start)\n');
    return undefined;
  }
  const mbps = (n: number): string => `${n.toFixed(1)} MB/s`;
  const size = `${(r.bytes / 1024 / 1024).toFixed(0)} MiB`;
  const files = `SQLite hub's files ${mbps(r.filesMBps)}`;
  line(`blob content stored, PostgreSQL bytea (${size}, a chunk at a time)`, mbps(r.pgMBps), files, r.pgMBps / r.filesMBps);
  line(`blob content stored, PostgreSQL with an S3-compatible bucket (${size})`, mbps(r.bucketMBps), files, r.bucketMBps / r.filesMBps);
  return r;
}

async function scopedRepair(): Promise<ScopedRepairResult> {
  const r = await benchScopedRepair(quick);
  line(
    `range repair of ${r.damaged} damaged documents of a scope of ${count(r.held)} (of ${count(r.docs)}), link bytes`,
    `${kb(r.repairBytes)} (${count(r.repairedDocs)} documents rewritten or removed)`,
    `join of the scope by snapshot: ${kb(r.joinBytes)}`,
    r.repairBytes / r.joinBytes,
  );
  return r;
}

const results = {
  ingest: await ingest(),
  wire: await wire(),
  propagation: await propagation(),
  catchup: await catchup(),
  flash: await flash(),
  fanin: await fanin(),
  partitions: await partitions(),
  footprint: await footprint(),
  backlog: await backlog(),
  dedupState: await dedupState(),
  scopeFanout: await scopeFanout(),
  fleet: await fleets(),
  relabel: await relabel(),
  digestCost: await digestCost(),
  repair: await repair(),
  scopedRepair: await scopedRepair(),
  blobs: await blobs(),
  contentStores: await contentStores(),
};

const machine = { cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, quick };
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
mkdirSync('bench/results', { recursive: true });
writeFileSync(`bench/results/${stamp}.json`, `${JSON.stringify({ machine, ...results, rows }, null, 2)}\n`);
writeFileSync(
  `bench/results/${stamp}.md`,
  [
    `Benchmarks ${quick ? '(quick)' : ''} — ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}`,
    '',
    '| figure | value | reference (same run) | ratio |',
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.figure} | ${r.value} | ${r.reference} | ${r.ratio} |`),
    '',
  ].join('\n'),
);
process.stdout.write(`results: bench/results/${stamp}.{json,md}\n`);
process.exit(0);
