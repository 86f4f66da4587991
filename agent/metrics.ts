import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Agent } from './agent.js';

/**
 * Prometheus metrics of one agent (conventional names, base units). Gauges are read from the
 * agent's status when scraped; counters follow its events.
 */
export function createAgentMetrics(agent: Agent): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'outpost_agent_' });
  const status = (): ReturnType<Agent['status']> => agent.status();

  new Gauge({
    name: 'outpost_agent_connected', help: '1 while connected to the hub', registers: [registry],
    collect() { this.set(status().connected ? 1 : 0); },
  });
  new Gauge({
    name: 'outpost_agent_outbox_depth', help: 'Writes waiting to be acknowledged by the hub', registers: [registry],
    collect() { this.set(status().outboxDepth); },
  });
  new Gauge({
    name: 'outpost_agent_applied_lsn', help: 'Highest LSN applied to the local replica, per collection', labelNames: ['collection'], registers: [registry],
    collect() { for (const [c, s] of Object.entries(status().collections)) this.set({ collection: c }, s.appliedLsn); },
  });
  new Gauge({
    name: 'outpost_agent_pending_writes', help: 'Writes waiting to be uploaded, per collection', labelNames: ['collection'], registers: [registry],
    collect() { for (const [c, s] of Object.entries(status().collections)) this.set({ collection: c }, s.pending); },
  });
  new Gauge({
    name: 'outpost_agent_oldest_pending_seconds', help: 'Age of the oldest write waiting to be uploaded, per collection', labelNames: ['collection'], registers: [registry],
    collect() {
      this.reset();
      for (const [c, s] of Object.entries(status().collections)) if (s.oldestPendingAgeMs !== undefined) this.set({ collection: c }, s.oldestPendingAgeMs / 1000);
    },
  });
  const applied = new Counter({ name: 'outpost_agent_changes_applied_total', help: 'Committed changes applied to the replica', registers: [registry] });
  const rejections = new Counter({
    name: 'outpost_agent_rejections_total', help: 'Writes refused by the hub, lost in a conflict, expired or dropped', labelNames: ['outcome'], registers: [registry],
  });
  agent.on('change', (changes) => applied.inc(changes.length));
  agent.on('rejection', (list) => { for (const r of list) rejections.inc({ outcome: r.outcome }); });
  return registry;
}
