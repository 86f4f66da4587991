#!/usr/bin/env node
import { Command, Option } from 'commander';
import pino, { type Logger } from 'pino';
import { Hub } from '../hub/hub.js';
import { loadHubConfig } from '../hub/config.js';
import { Agent } from '../agent/agent.js';
import { createAgentHttp } from '../agent/http.js';
import { parseHostPort, parsePort, parsePositive } from './address.js';

const program = new Command('outpost')
  .description('Keeps fleets of edge devices in sync with one authoritative main site.')
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'));

function logger(name: string): Logger {
  return pino({ name, level: program.opts<{ logLevel: string }>().logLevel });
}

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

program
  .command('hub')
  .description('run the hub: embedded MQTT broker and primary database')
  .option('--port <port>', 'MQTT listener port', parsePort, 1883)
  .option('--host <host>', 'MQTT listener address', '0.0.0.0')
  .option('--http <host:port>', 'HTTP API address', parseHostPort)
  .option('--data <dir>', 'data directory', './data/hub')
  .option('--config <file>', 'hub configuration (YAML or JSON): collections, policies, retention')
  .option('--dev', 'development mode: admit any agent without credentials', false)
  .action(async (opts: { port: number; host: string; http?: { host: string; port: number }; data: string; dev: boolean; config?: string }) => {
    const log = logger('hub');
    const hub = await Hub.start({
      port: opts.port, host: opts.host, dataDir: opts.data, dev: opts.dev, logger: log,
      ...(opts.http && { http: opts.http }),
      ...(opts.config && { config: loadHubConfig(opts.config) }),
    });
    onSignals(log, () => hub.stop());
  });

program
  .command('agent')
  .description('run an agent: local replica, durable outbox and device HTTP API')
  .requiredOption('--hub <url>', 'hub MQTT URL, e.g. mqtt://127.0.0.1:1883')
  .requiredOption('--id <agentId>', 'this device\'s agent id')
  .option('--data <dir>', 'data directory (default ./data/<id>)')
  .option('--http <host:port>', 'device HTTP API address', parseHostPort, { host: '127.0.0.1', port: 7801 })
  .option('--collections <names>', 'comma-separated collections to replicate (default: all)')
  .option('--reconnect-max-ms <ms>', 'longest wait between reconnect attempts', parsePositive, 30_000)
  .option('--sync-cron <expression>', 'upload only in windows opened by this cron expression (default: realtime)')
  .option('--sync-window-seconds <s>', 'how long each sync window stays open', parsePositive, 300)
  .option('--sync-disconnect-outside', 'stay disconnected between windows (metered links)', false)
  .option('--storage-limit-mb <mb>', 'cap the agent database at this size; writes beyond it fail with OUTPOST_STORAGE_FULL', parsePositive)
  .addOption(new Option('--clock-offset-ms <ms>', 'shift this agent\'s wall clock (testing skewed devices)').argParser(Number).hideHelp())
  .action(async (opts: {
    hub: string; id: string; data?: string; http: { host: string; port: number }; collections?: string;
    reconnectMaxMs: number; storageLimitMb?: number; clockOffsetMs?: number;
    syncCron?: string; syncWindowSeconds: number; syncDisconnectOutside: boolean;
  }) => {
    const log = logger('agent');
    const offset = opts.clockOffsetMs ?? 0;
    const agent = new Agent({
      ...(offset !== 0 && { now: () => Date.now() + offset }),
      ...(opts.syncCron !== undefined && {
        sync: { mode: 'windows' as const, cron: opts.syncCron, windowSeconds: opts.syncWindowSeconds, disconnectOutside: opts.syncDisconnectOutside },
      }),
      ...(opts.storageLimitMb !== undefined && { storageLimitBytes: opts.storageLimitMb * 1024 * 1024 }),
      hubUrl: opts.hub, agentId: opts.id, dataDir: opts.data ?? `./data/${opts.id}`, logger: log,
      reconnect: { initialMs: Math.min(500, opts.reconnectMaxMs), maxMs: opts.reconnectMaxMs },
      ...(opts.collections && { collections: opts.collections.split(',').map((c) => c.trim()).filter(Boolean) }),
    }).start();
    const http = await createAgentHttp(agent, log);
    await http.listen({ host: opts.http.host, port: opts.http.port });
    log.info({ agentId: opts.id, hub: opts.hub, http: `http://${opts.http.host}:${opts.http.port}` }, 'agent started');
    onSignals(log, async () => {
      await http.close();
      await agent.close();
    });
  });

program.parseAsync().catch((error: unknown) => {
  process.stderr.write(`outpost: ${(error as Error).message}\n`);
  process.exit(1);
});
