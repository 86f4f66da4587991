#!/usr/bin/env node
import { Command } from 'commander';
import pino, { type Logger } from 'pino';
import { addClientCommands } from './agent-client.js';
import { addBlobCommands } from './agent-blobs.js';
import { addAgentAdmin } from './hub-agents.js';
import { addBrokerExport } from './hub-export.js';
import { addRestoreCommands } from './hub-restore.js';
import { addScopeCommands } from './hub-scopes.js';
import { addVerifyCommand } from './hub-verify.js';
import { ConfigError, ErrorCode, OutpostError } from '../shared/errors.js';
import { commanderOptions, renderReference, resolveOptions } from './options.js';
import { readPem } from './hub-run.js';
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

const program = new Command('outpost').description('Keeps fleets of edge devices in sync with one authoritative main site.');

const hubCommand = program.command('hub').description('run the hub, or manage its agents');
const hubRun = hubCommand
  .command('run', { isDefault: true })
  .description('run the hub: MQTT broker (embedded, or an external one with --broker) and primary database');
for (const option of commanderOptions(HUB_OPTIONS)) hubRun.addOption(option);
addAgentAdmin(hubCommand);
addBrokerExport(hubCommand);
addRestoreCommands(hubCommand);
addScopeCommands(hubCommand);
addVerifyCommand(hubCommand);
hubRun.action(async (flags: Record<string, unknown>) => {
  const o = resolveOptions(HUB_OPTIONS, flags, process.env);
  const log = pino({ name: 'hub', level: o.logLevel as string });
  const { runHub } = await import('./hub-run.js');
  await runHub(o, log, (stop) => onSignals(log, stop));
});

const agentCommand = program.command('agent').description('run an agent, or talk to a running one');
const run = agentCommand
  .command('run', { isDefault: true })
  .description('run an agent: local replica, durable outbox and device HTTP API')
  .option('--config <file>', 'agent configuration (YAML); flags and OUTPOST_* variables override it (env OUTPOST_CONFIG)');
for (const option of commanderOptions(AGENT_OPTIONS)) run.addOption(option);
run.action(async (flags: Record<string, unknown>) => {
  const o = resolveOptions(AGENT_OPTIONS, flags, process.env, (flags.config as string | undefined) ?? process.env.OUTPOST_CONFIG);
  const log = pino({ name: 'agent', level: o.logLevel as string });
  const [{ Agent }, { createAgentHttp }] = await Promise.all([import('../agent/agent.js'), import('../agent/http.js')]);
  const offset = o.clockOffsetMs as number;
  const agent = new Agent({
    hubUrl: o.hub as string,
    agentId: o.id as string,
    dataDir: (o.data as string | undefined) ?? `./data/${o.id as string}`,
    logger: log,
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
    ...((o.budgetMbPerDay ?? o.budgetMbPerMonth) !== undefined && {
      transferBudget: {
        ...(o.budgetMbPerDay !== undefined && { bytesPerDay: (o.budgetMbPerDay as number) * 1024 * 1024 }),
        ...(o.budgetMbPerMonth !== undefined && { bytesPerMonth: (o.budgetMbPerMonth as number) * 1024 * 1024 }),
      },
    }),
    blobs: { cacheBytes: (o.blobCacheMb as number) * 1024 * 1024, maxBlobBytes: (o.maxBlobMb as number) * 1024 * 1024 },
    verifyIntervalMs: (o.verifyIntervalSeconds as number) * 1000,
    scrubBytesPerMinute: (o.scrubKbPerMinute as number) * 1024,
    ...(o.syncCron !== undefined && {
      sync: {
        mode: 'windows' as const,
        cron: o.syncCron as string,
        windowSeconds: o.syncWindowSeconds as number,
        disconnectOutside: o.syncDisconnectOutside as boolean,
      },
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
addBlobCommands(agentCommand);

program
  .command('demo')
  .description('a hub and three agents on this machine, one on a flaky link, with a live table')
  .option('--seconds <n>', 'how long to write', '20')
  .option('--keep', 'keep the data directory')
  .action(async (opts: { seconds: string; keep?: boolean }) => {
    const { runDemo } = await import('./demo.js');
    const ok = await runDemo({ seconds: Number(opts.seconds) || 20, keep: opts.keep ?? false });
    process.exit(ok ? 0 : 1);
  });

program
  .command('config-reference', { hidden: true })
  .description('print docs/CONFIGURATION.md')
  .action(() => {
    process.stdout.write(
      [
        '# Configuration reference',
        '',
        'Generated from the option tables in `cli/tables.ts` (`npm run docs:config`). Every option can be',
        'given as a flag, as an `OUTPOST_*` environment variable, or (for the agent) as a key in the YAML',
        'file named by `--config`; a flag wins over the environment, which wins over the file. An unknown',
        'key in the file, or a value of the wrong type anywhere, stops the process at start with a message',
        'naming the option. Unknown environment variables are ignored, as hub and agent share the prefix.',
        '',
        renderReference('outpost agent', 'Runs an agent. Example file: `deploy/agent/agent.yaml`.', AGENT_OPTIONS),
        renderReference(
          'outpost hub',
          'Runs the hub. Collections and policies go in the file named by `config` (example: `deploy/hub/hub.yaml`).',
          HUB_OPTIONS,
        ),
      ].join('\n'),
    );
  });

// Every failure ends in one line with its stable code, so scripts can tell them apart.
program.parseAsync().catch((error: unknown) => {
  const prefix = error instanceof ConfigError ? 'configuration error: ' : '';
  const code = error instanceof OutpostError ? error.code : ErrorCode.INTERNAL;
  process.stderr.write(`outpost: ${prefix}${(error as Error).message} [${code}]\n`);
  process.exit(1);
});
