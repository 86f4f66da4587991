import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { HubCore } from './core.js';
import { REFUSED_WORK } from './refused-work.js';
import type { AgentView } from './fleet.js';
import { SHED_REASONS, type ShedLog } from './shed.js';

/**
 * Prometheus metrics of the hub (conventional names, base units): commits, outcomes by kind,
 * batch sizes, commit latency, bytes in and out, connected agents, per-agent lag and outbox, and
 * clients shed to protect the others, by reason.
 */
export function createHubMetrics(core: HubCore, fleet: () => Promise<AgentView[]>, connected: () => number, shedLog: ShedLog): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'outpost_hub_' });
  const commits = new Counter({ name: 'outpost_hub_commits_total', help: 'Group commits', registers: [registry] });
  const outcomes = new Counter({
    name: 'outpost_hub_ops_total',
    help: 'Ops processed, by outcome',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const requests = new Histogram({
    name: 'outpost_hub_commit_requests',
    help: 'Batches and hub writes sharing one group commit',
    registers: [registry],
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
  });
  const latency = new Histogram({
    name: 'outpost_hub_commit_duration_seconds',
    help: 'Time to validate, resolve and commit one group commit',
    registers: [registry],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  });
  const bytes = new Counter({
    name: 'outpost_hub_message_bytes_total',
    help: 'Protocol message bytes',
    labelNames: ['direction'],
    registers: [registry],
  });
  core.on('commit', (n, list, seconds) => {
    commits.inc();
    requests.observe(n);
    latency.observe(seconds);
    for (const outcome of list) outcomes.inc({ outcome });
  });
  core.on('bytes', (direction, n) => bytes.inc({ direction }, n));
  const shed = new Counter({
    name: 'outpost_hub_clients_shed_total',
    help: 'Clients dropped, refused or rate-limited to protect the others, by reason (docs/SECURITY.md)',
    labelNames: ['reason'],
    registers: [registry],
  });
  // Every reason is exported from the start, at 0, so that an alert can be written on any of them.
  for (const reason of SHED_REASONS) shed.inc({ reason }, 0);
  shedLog.on('shed', (reason) => shed.inc({ reason }));

  const refused = new Counter({
    name: 'outpost_hub_work_refused_total',
    help: 'Work refused to one client to bound what it costs, by kind (docs/SECURITY.md)',
    labelNames: ['kind'],
    registers: [registry],
  });
  for (const kind of REFUSED_WORK) refused.inc({ kind }, 0);
  core.on('refused', (kind, _agentId, count) => refused.inc({ kind }, count));
  new Gauge({
    name: 'outpost_hub_replica_waits',
    help: 'Committed writes waiting for replicas (bounded per writer and in all)',
    registers: [registry],
    collect() {
      this.set(core.replication.waiting);
    },
  });
  new Gauge({
    name: 'outpost_hub_connected_agents',
    help: 'Agents connected now',
    registers: [registry],
    collect() {
      this.set(connected());
    },
  });
  new Gauge({
    name: 'outpost_hub_head_lsn',
    help: 'LSN of the last commit',
    registers: [registry],
    collect() {
      this.set(core.store.head);
    },
  });
  new Gauge({
    name: 'outpost_hub_agent_lag_changes',
    help: 'Changes an agent has not applied yet, per collection',
    labelNames: ['agent', 'collection'],
    registers: [registry],
    async collect() {
      const agents = await fleet();
      this.reset();
      for (const a of agents)
        for (const [c, v] of Object.entries(a.collections)) this.set({ agent: a.agentId, collection: c }, v.lagChanges);
    },
  });
  new Gauge({
    name: 'outpost_hub_agent_outbox_depth',
    help: 'Writes an agent still had to upload at its last report',
    labelNames: ['agent'],
    registers: [registry],
    async collect() {
      const agents = await fleet();
      this.reset();
      for (const a of agents) if (a.outboxDepth !== undefined) this.set({ agent: a.agentId }, a.outboxDepth);
    },
  });
  // What verifying each device's copy found, as it last reported (the fleet view's `verification`).
  const verification = (name: string, help: string, value: (v: NonNullable<AgentView['verification']>) => number | undefined): void => {
    new Gauge({
      name,
      help,
      labelNames: ['agent'],
      registers: [registry],
      async collect() {
        const agents = await fleet();
        this.reset();
        for (const a of agents) {
          const figure = a.verification && value(a.verification);
          if (figure !== undefined) this.set({ agent: a.agentId }, figure);
        }
      },
    });
  };
  verification(
    'outpost_hub_agent_divergences_found',
    "Divergences found in an agent's copy (scrub, digest or hole)",
    (v) => v.divergencesFound,
  );
  verification('outpost_hub_agent_repairs', "Repairs of an agent's copy", (v) => v.repairs);
  verification('outpost_hub_agent_repaired_documents', 'Documents a repair rewrote or removed on an agent', (v) => v.documentsRepaired);
  verification('outpost_hub_agent_repaired_bytes', "Bytes an agent's repairs moved", (v) => v.bytesRepaired);
  verification('outpost_hub_agent_verified_timestamp_seconds', "When an agent's copy last matched the hub's digests (unix seconds)", (v) =>
    v.lastVerifiedAt === undefined ? undefined : Date.parse(v.lastVerifiedAt) / 1000,
  );
  verification(
    'outpost_hub_agent_verified_lsn',
    "The LSN at which an agent's copy last matched the hub's digests",
    (v) => v.lastVerifiedLsn,
  );
  return registry;
}
