#!/usr/bin/env node
import { Command } from 'commander';
import pino, { type Logger } from 'pino';
import { addClientCommands } from './agent-client.js';
import { addAgentAdmin } from './hub-agents.js';
import { addBrokerExport } from './hub-export.js';
import { readFileSync } from 'node:fs';
import { commanderOptions, ConfigError, flagOf, renderReference, resolveOptions } from './options.js';
import { AGENT_OPTIONS, HUB_OPTIONS } from './tables.js';

type Address = { host: string; port: number };

/** Stops `stop` once on SIGTERM or SIGINT, then exits. */
function onSignals(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

/** Reads a PEM file named by an option; a missing one is a configuration error naming it. */
function readPem(o: Record<string, unknown>, key: string, required = false): Buffer | undefined {
  const file = o[key] as string | undefined;
  if (file === undefined) {
    if (required) throw new ConfigError(`option ${flagOf(key)} is required here (a PEM file)`);
    return undefined;
  }
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new ConfigError(`option ${flagOf(key)}: cannot read ${file}: ${(cause as Error).message}`, { cause });
  }
}

const program = new Command('outpost').description('Keeps fleets of edge devices in sync with one authoritative main site.');

const hubCommand = program.command('hub').description('run the hub, or manage its agents');
const hubRun = hubCommand.command('run', { isDefault: true }).description('run the hub: MQTT broker (embedded, or an external one with --broker) and primary database');
for (const option of commanderOptions(HUB_OPTIONS)) hubRun.addOption(option);
addAgentAdmin(hubCommand);
addBrokerExport(hubCommand);
hubRun.action(async (flags: Record<string, unknown>) => {
  const o = resolveOptions(HUB_OPTIONS, flags, process.env);
  const log = pino({ name: 'hub', level: o.logLevel as string });
  const [{ loadHubConfig }, { isPostgresUrl, openHubStore }] = await Promise.all([import('../hub/config.js'), import('../hub/store/open-store.js')]);
  if (o.store !== undefined && !isPostgresUrl(o.store as string)) {
    throw new ConfigError(`option --store: expected postgres://user:password@host:5432/database, got ${JSON.stringify(o.store)}; leave it out for SQLite in --data`);
  }
  const config = o.config !== undefined ? loadHubConfig(o.config as string) : undefined;
  // On PostgreSQL several hub processes may share the database: one leads, the others stand by.
  const leader = o.store === undefined ? undefined : await (await import('../hub/leadership.js')).LeaderLock.acquire(o.store as string, { log });
  const store = await openHubStore({ store: o.store as string | undefined, dataDir: o.data as string, ...(leader && { epoch: leader.epoch }) });
  const common = {
    dataDir: o.data as string, store, ...(leader && { epoch: leader.epoch }), dev: o.dev as boolean, logger: log,
    ...(o.http !== undefined && { http: o.http as Address }),
    ...(o.adminToken !== undefined && { adminToken: o.adminToken as string }),
    ...(config && { config }),
  };
  let hub: { stop: () => Promise<void>; core: { on: (event: 'fatal', listener: (error: Error) => void) => unknown } };
  if (o.broker !== undefined) {
    if (o.tlsPort !== undefined) {
      throw new ConfigError('option --tls-port configures the embedded broker\'s listener; with --broker, configure TLS on that broker (and --broker-ca here)');
    }
    const { BrokerClientHub } = await import('../hub/external-broker.js');
    hub = await BrokerClientHub.start({
      ...common,
      broker: {
        url: o.broker as string, username: o.brokerUsername as string,
        ...(o.brokerPassword !== undefined && { password: o.brokerPassword as string }),
        ...(o.brokerCa !== undefined && { ca: readPem(o, 'brokerCa')! }),
      },
    });
  } else {
    // Loaded here, not at the top: an agent on a small device does not pay for the broker's modules.
    const { Hub } = await import('../hub/hub.js');
    hub = await Hub.start({
      ...common, port: o.port as number, host: o.host as string,
      connectsPerAddress: o.connectsPerAddress as number,
      ...(o.tlsPort !== undefined && {
        plain: !(o.tlsOnly as boolean),
        tls: {
          port: o.tlsPort as number, cert: readPem(o, 'tlsCert', true)!, key: readPem(o, 'tlsKey', true)!,
          ...(o.tlsCa !== undefined && { ca: readPem(o, 'tlsCa')! }), requireClientCert: o.tlsRequireClientCert as boolean,
        },
      }),
    });
  }
  // Once, and bounded: a store that hangs must not keep a deposed process alive.
  let quitting = false;
  const quit = (why: string, error: Error): void => {
    if (quitting) return;
    quitting = true;
    log.error({ err: error.message }, why);
    setTimeout(() => process.exit(1), 10_000).unref();
    void hub.stop().finally(() => process.exit(1));
  };
  // Deposed, or another writer committed: this process can commit nothing more. Stop, so that a
  // supervisor restarts it (it then stands by, or reopens the store at the true head).
  hub.core.on('fatal', (error) => quit('the store refuses this hub as its writer; stopping', error));
  // Another process may lead by now; its epoch fences this one's commits anyway.
  leader?.onLost((error) => quit('lost the leader lock; stopping', error));
  onSignals(log, async () => {
    await hub.stop();
    await leader?.release();
  });
});

const agentCommand = program.command('agent').description('run an agent, or talk to a running one');
const run = agentCommand.command('run', { isDefault: true }).description('run an agent: local replica, durable outbox and device HTTP API')
  .option('--config <file>', 'agent configuration (YAML); flags and OUTPOST_* variables override it (env OUTPOST_CONFIG)');
for (const option of commanderOptions(AGENT_OPTIONS)) run.addOption(option);
run.action(async (flags: Record<string, unknown>) => {
  const o = resolveOptions(AGENT_OPTIONS, flags, process.env, (flags.config as string | undefined) ?? process.env.OUTPOST_CONFIG);
  const log = pino({ name: 'agent', level: o.logLevel as string });
  const [{ Agent }, { createAgentHttp }] = await Promise.all([import('../agent/agent.js'), import('../agent/http.js')]);
  const offset = o.clockOffsetMs as number;
  const agent = new Agent({
    hubUrl: o.hub as string, agentId: o.id as string, dataDir: (o.data as string | undefined) ?? `./data/${o.id as string}`, logger: log,
    reconnect: { initialMs: Math.min(500, o.reconnectMaxMs as number), maxMs: o.reconnectMaxMs as number },
    ...(offset !== 0 && { now: () => Date.now() + offset }),
    ...(o.collections !== undefined && { collections: o.collections as string[] }),
    ...(o.hubToken !== undefined && { hubToken: o.hubToken as string }),
    ...((o.tlsCa ?? o.tlsCert) !== undefined && {
      tls: {
        ...(o.tlsCa !== undefined && { ca: readPem(o, 'tlsCa')! }),
        ...(o.tlsCert !== undefined && { cert: readPem(o, 'tlsCert')!, key: readPem(o, 'tlsKey', true)! }),
      },
    }),
    ...(o.storageLimitMb !== undefined && { storageLimitBytes: (o.storageLimitMb as number) * 1024 * 1024 }),
    ...(o.syncCron !== undefined && {
      sync: { mode: 'windows' as const, cron: o.syncCron as string, windowSeconds: o.syncWindowSeconds as number, disconnectOutside: o.syncDisconnectOutside as boolean },
    }),
  }).start();
  const address = o.http as Address;
  const http = await createAgentHttp(agent, log, { ...(o.token !== undefined && { token: o.token as string }) });
  await http.listen({ host: address.host, port: address.port });
  log.info({ agentId: o.id, hub: o.hub, http: `http://${address.host}:${address.port}` }, 'agent started');
  onSignals(log, async () => {
    await http.close();
    await agent.close(); // stores what is queued; a batch in flight is resent and deduplicated
  });
});
addClientCommands(agentCommand);

program.command('demo').description('a hub and three agents on this machine, one on a flaky link, with a live table')
  .option('--seconds <n>', 'how long to write', '20')
  .option('--keep', 'keep the data directory')
  .action(async (opts: { seconds: string; keep?: boolean }) => {
    const { runDemo } = await import('./demo.js');
    const ok = await runDemo({ seconds: Number(opts.seconds) || 20, keep: opts.keep ?? false });
    process.exit(ok ? 0 : 1);
  });

program.command('config-reference', { hidden: true }).description('print docs/CONFIGURATION.md').action(() => {
  process.stdout.write([
    '# Configuration reference',
    '',
    'Generated from the option tables in `cli/tables.ts` (`npm run docs:config`). Every option can be',
    'given as a flag, as an `OUTPOST_*` environment variable, or (for the agent) as a key in the YAML',
    'file named by `--config`; a flag wins over the environment, which wins over the file. An unknown',
    'key in the file, or a value of the wrong type anywhere, stops the process at start with a message',
    'naming the option. Unknown environment variables are ignored, as hub and agent share the prefix.',
    '',
    renderReference('outpost agent', 'Runs an agent. Example file: `deploy/agent/agent.yaml`.', AGENT_OPTIONS),
    renderReference('outpost hub', 'Runs the hub. Collections and policies go in the file named by `config` (example: `deploy/hub/hub.yaml`).', HUB_OPTIONS),
  ].join('\n'));
});

program.parseAsync().catch((error: unknown) => {
  const prefix = error instanceof ConfigError ? 'configuration error: ' : '';
  process.stderr.write(`outpost: ${prefix}${(error as Error).message}\n`);
  process.exit(1);
});
