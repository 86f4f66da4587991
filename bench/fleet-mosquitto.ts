/**
 * The fleet benchmark's second shape: the same fleet (bench/fleet.ts) connected to Mosquitto,
 * with the hub its client (`outpost hub --broker`), as docs/SCALING.md proposes beyond what the
 * embedded broker carries. Mosquitto authenticates each device and applies the ACL from the
 * files `outpost hub export mosquitto` writes from the hub's database and access section; the
 * hub keeps one connection. The same figures as the embedded shape, for the hub and for
 * Mosquitto each (bench/fleet-measure.ts). No storm: a hub restart leaves the devices connected
 * to Mosquitto. Skipped where Mosquitto is not installed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MOSQUITTO } from '../test/helpers/mosquitto.js';
import { freePort } from '../test/helpers/ports.js';
import { runMosquitto } from './mosquitto-process.js';
import { fleetIdentities, provisionFleet } from './fleet-credentials.js';
import { measureFleet, type FleetFigures, type FleetSizes } from './fleet-measure.js';
import { FleetWorkers } from './fleet-workers.js';
import { connectTimeoutMs, fleetConfig, fleetSizes, workerCount } from './fleet.js';
import { startHubProcess } from './hub-process.js';
import { tempDir } from './temp.js';

const CLI = fileURLToPath(new URL('../dist/cli/outpost.js', import.meta.url));
const HUB_ACCOUNT = { username: 'outpost-hub', password: 'bench-fleet-hub-account' };

export interface FleetMosquittoResult extends FleetFigures {
  sizes: FleetSizes;
}

/** `outpost hub export mosquitto` into `out`, its listener on `port`. */
async function exportFiles(dataDir: string, config: string, out: string, port: number): Promise<void> {
  const args = ['hub', 'export', 'mosquitto', '--data', dataDir, '--config', config, '--out', out];
  args.push('--broker-username', HUB_ACCOUNT.username, '--broker-password', HUB_ACCOUNT.password, '--listener-port', String(port));
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let errors = '';
  child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`outpost hub export mosquitto failed (${code}):\n${errors}`);
}

/**
 * Mosquitto with the exported configuration on 127.0.0.1 only, without a line logged per
 * connection (the figures are the broker's, not its log's); resolves once it runs.
 */
async function startMosquitto(exportDir: string, port: number): Promise<ChildProcess> {
  const exported = readFileSync(join(exportDir, 'mosquitto.conf'), 'utf8')
    .split('\n')
    .filter((l) => !l.startsWith('listener '));
  return runMosquitto(join(exportDir, 'bench-mosquitto.conf'), [`listener ${port} 127.0.0.1`, ...exported, 'connection_messages false']);
}

export async function benchFleetMosquitto(quick: boolean): Promise<FleetMosquittoResult | undefined> {
  if (!MOSQUITTO) return undefined;
  const sizes = fleetSizes(quick);
  const dir = tempDir('bench-fleet-mosquitto');
  const dataDir = join(dir, 'hub');
  const config = fleetConfig(dir);
  const devices = fleetIdentities(sizes.devices);
  // Mosquitto checks the tokens (PBKDF2, as `mosquitto_passwd` writes them); the hub's own hash is never checked here.
  await provisionFleet(dataDir, devices, 'cheap');
  const port = await freePort();
  await exportFiles(dataDir, config, dir, port);
  const [broker, workers] = await Promise.all([startMosquitto(dir, port), FleetWorkers.fork(workerCount(quick))]);
  const exited = new Promise((resolve) => broker.once('exit', resolve));
  const url = `mqtt://127.0.0.1:${port}`;
  const hubArgs = ['--config', config, '--broker', url, '--broker-username', HUB_ACCOUNT.username];
  const hub = await startHubProcess(dataDir, [...hubArgs, '--broker-password', HUB_ACCOUNT.password], { dev: false });
  try {
    const processes = { hub: hub.pid, broker: broker.pid! };
    const figures = await measureFleet(
      workers,
      { host: '127.0.0.1', port },
      devices,
      sizes,
      processes,
      connectTimeoutMs(sizes.devices, 'cheap'),
    );
    return { sizes, ...figures };
  } finally {
    await workers.close();
    await hub.stop();
    broker.kill('SIGTERM');
    await exited;
  }
}

/** Alone: `npx tsx bench/fleet-mosquitto.ts` (after `npm run build`; `--quick` for the smoke run's sizes). */
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${JSON.stringify(await benchFleetMosquitto(process.argv.includes('--quick')), null, 2)}\n`);
  process.exit(0);
}
