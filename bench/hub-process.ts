/**
 * The hub as its own process, as it is deployed: `outpost hub` from dist/ (the bench script builds
 * first), with `--dev` unless agents must log in with their tokens. Benchmarks that time the hub run it apart from the agents so that neither
 * waits behind the other's event loop, and so that /proc can tell its CPU and memory apart.
 * BENCH_HUB_FLAGS passes node flags to it (e.g. --cpu-prof), as for the ingest benchmark.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/ports.js';
import { killOnExit } from './children.js';

const CLI = fileURLToPath(new URL('../dist/cli/outpost.js', import.meta.url));

export interface HubProcess {
  /** `mqtt://127.0.0.1:<port>` for agents. */
  url: string;
  /** `http://127.0.0.1:<port>`: the hub's HTTP API. */
  http: string;
  pid: number;
  /** The hub's head LSN, from its HTTP API. */
  head(): Promise<number>;
  stop(): Promise<void>;
}

export interface HubProcessOptions {
  /** Where agents already try to connect (default: a free port). */
  port?: number;
  env?: Readonly<Record<string, string>>;
  /** `--dev`, admitting any agent without credentials (default); false: agents log in with their tokens. */
  dev?: boolean;
}

/** Resolves once the hub listens. */
export async function startHubProcess(
  dataDir: string,
  extraArgs: readonly string[] = [],
  { port, env = {}, dev = true }: HubProcessOptions = {},
): Promise<HubProcess> {
  const [mqttPort, httpPort] = await Promise.all([port ?? freePort(), freePort()]);
  const flags = process.env.BENCH_HUB_FLAGS?.split(' ').filter(Boolean) ?? [];
  const hub = killOnExit(
    spawn(
      process.execPath,
      [
        ...flags,
        CLI,
        'hub',
        ...(dev ? ['--dev'] : []),
        '--host',
        '127.0.0.1',
        '--port',
        String(mqttPort),
        '--http',
        `127.0.0.1:${httpPort}`,
        '--data',
        dataDir,
        '--log-level',
        'info',
        ...extraArgs,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
    ),
  );
  const exited = new Promise<void>((resolve) => hub.once('exit', () => resolve()));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (!output.includes('hub started')) return;
      hub.stdout.off('data', onData);
      hub.stdout.resume(); // keep draining what it logs later
      resolve();
    };
    hub.stdout.on('data', onData);
    hub.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    void exited.then(() => reject(new Error(`the hub exited before it started:\n${output}`)));
  });
  return {
    url: `mqtt://127.0.0.1:${mqttPort}`,
    http: `http://127.0.0.1:${httpPort}`,
    pid: hub.pid!,
    head: async () => ((await (await fetch(`http://127.0.0.1:${httpPort}/v1/status`)).json()) as { head: number }).head,
    stop: async () => {
      hub.kill('SIGTERM'); // a clean stop: commits what is queued and closes the store
      await exited;
    },
  };
}
