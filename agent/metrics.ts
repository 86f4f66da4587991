import type { Registry } from 'prom-client';
import type { Agent } from './agent.js';

export interface AgentMetrics {
  /** The Prometheus text exposition and its content type. */
  scrape(): Promise<{ contentType: string; body: string }>;
}

/**
 * Prometheus metrics of one agent (conventional names, base units). Gauges are read from the
 * agent's status when scraped; counters follow its events from the start. prom-client is loaded
 * on the first scrape: most devices are never scraped, and it costs a few MB of a Pi's memory.
 */
export function createAgentMetrics(agent: Agent): AgentMetrics {
  let applied = 0;
  const rejections = new Map<string, number>();
  agent.on('change', (changes) => (applied += changes.length));
  agent.on('rejection', (list) => {
    for (const r of list) rejections.set(r.outcome, (rejections.get(r.outcome) ?? 0) + 1);
  });
  let registry: Promise<Registry> | undefined;
  return {
    async scrape() {
      registry ??= buildRegistry(
        agent,
        () => applied,
        () => rejections,
      );
      const r = await registry;
      return { contentType: r.contentType, body: await r.metrics() };
    },
  };
}

async function buildRegistry(agent: Agent, applied: () => number, rejections: () => ReadonlyMap<string, number>): Promise<Registry> {
  const { collectDefaultMetrics, Counter, Gauge, Registry } = await import('prom-client');
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'outpost_agent_' });
  const status = (): ReturnType<Agent['status']> => agent.status();

  new Gauge({
    name: 'outpost_agent_connected',
    help: '1 while connected to the hub',
    registers: [registry],
    collect() {
      this.set(status().connected ? 1 : 0);
    },
  });
  new Gauge({
    name: 'outpost_agent_outbox_depth',
    help: 'Writes waiting to be acknowledged by the hub',
    registers: [registry],
    collect() {
      this.set(status().outboxDepth);
    },
  });
  new Gauge({
    name: 'outpost_agent_applied_lsn',
    help: 'Highest LSN applied to the local replica, per collection',
    labelNames: ['collection'],
    registers: [registry],
    collect() {
      for (const [c, s] of Object.entries(status().collections)) this.set({ collection: c }, s.appliedLsn);
    },
  });
  new Gauge({
    name: 'outpost_agent_pending_writes',
    help: 'Writes waiting to be uploaded, per collection',
    labelNames: ['collection'],
    registers: [registry],
    collect() {
      for (const [c, s] of Object.entries(status().collections)) this.set({ collection: c }, s.pending);
    },
  });
  new Gauge({
    name: 'outpost_agent_oldest_pending_seconds',
    help: 'Age of the oldest write waiting to be uploaded, per collection',
    labelNames: ['collection'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [c, s] of Object.entries(status().collections))
        if (s.oldestPendingAgeMs !== undefined) this.set({ collection: c }, s.oldestPendingAgeMs / 1000);
    },
  });
  new Counter({
    name: 'outpost_agent_changes_applied_total',
    help: 'Committed changes applied to the replica',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(applied());
    },
  });
  new Counter({
    name: 'outpost_agent_rejections_total',
    help: 'Writes refused by the hub, lost in a conflict, expired or dropped',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [outcome, n] of rejections()) this.inc({ outcome }, n);
    },
  });
  return registry;
}
