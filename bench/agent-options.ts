import type { Agent } from '../agent/agent.js';

/** An agent a benchmark runs in its own process, on `dataDir`, reconnecting quickly to the hub at `hubUrl`. */
export const benchAgentOptions = (hubUrl: string, agentId: string, dataDir: string): ConstructorParameters<typeof Agent>[0] => ({
  hubUrl,
  agentId,
  dataDir,
  reconnect: { initialMs: 20, maxMs: 200 },
});
