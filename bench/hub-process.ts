/**
 * The hub as its own process, as it is deployed: `outpost hub --dev` from dist/ (the bench script
 * builds first). Benchmarks that time the hub run it apart from the agents so that neither
 * waits behind the other's event loop, and so that /proc can tell its CPU and memory apart.
 */
import { join } from 'node:path';
import { freePort } from '../test/helpers/ports.js';
import { http, OutpostProcess } from '../test/helpers/processes.js';
import { killOnExit } from './children.js';

export interface HubProcess {
  /** `mqtt://127.0.0.1:<port>` for agents. */
  url: string;
  pid: number;
  /** The hub's head LSN, from its HTTP API. */
  head(): Promise<number>;
  stop(): Promise<void>;
}

export async function startHubProcess(dataDir: string, extraArgs: readonly string[] = []): Promise<HubProcess> {
  const [port, httpPort] = await Promise.all([freePort(), freePort()]);
  const hub = new OutpostProcess(['hub', '--dev', '--host', '127.0.0.1', '--port', String(port),
    '--http', `127.0.0.1:${httpPort}`, '--data', join(dataDir), ...extraArgs]);
  killOnExit(hub.child);
  // A hub opening a large database takes a moment; a failed start shows its output.
  await hub.waitForLog('hub started', 60_000);
  return {
    url: `mqtt://127.0.0.1:${port}`,
    pid: hub.child.pid!,
    head: async () => (await http<{ head: number }>('GET', `http://127.0.0.1:${httpPort}/v1/status`)).body.head,
    stop: async () => {
      await hub.kill('SIGTERM'); // a clean stop: commits what is queued and closes the store
    },
  };
}
