import type { Command } from 'commander';
import { ConfigError, ErrorCode, HubUnreachableError, OutpostError } from '../shared/errors.js';
import { table } from './agent-client.js';

interface StoreOptions {
  data: string;
  store?: string;
  partition: string;
  json?: boolean;
}

interface HubClientOptions {
  url: string;
  adminToken?: string;
  json?: boolean;
}

/**
 * `outpost hub restore from | mark | lost | reapply`: restoring the hub's database from a backup
 * as a supported operation (docs/OPERATIONS.md). `from` and `mark` work on a stopped hub's
 * database; `lost` reads it whether the hub runs or not; `reapply` asks the running hub, which
 * commits through its own group commit.
 */
export function addRestoreCommands(hub: Command): void {
  const restore = hub.command('restore').description('restore the database from a backup, and recover what agents still held');
  const withStore = (c: Command): Command =>
    c
      .option('--data <dir>', "the hub's data directory (env OUTPOST_DATA)", process.env.OUTPOST_DATA ?? './data/hub')
      .option('--store <url>', "the hub's PostgreSQL store, if it has one (env OUTPOST_STORE)", process.env.OUTPOST_STORE)
      .option('--partition <name>', 'the partition whose database this is', 'default')
      .option('--json', 'machine-readable output');
  const say = (opts: { json?: boolean }, value: unknown, human: string): void => {
    process.stdout.write(opts.json ? `${JSON.stringify(value, null, 2)}\n` : `${human}\n`);
  };

  withStore(
    restore
      .command('from')
      .argument('<backup>', 'a SQLite backup of hub.db (VACUUM INTO, or the backup API)')
      .description('with the hub stopped: check a SQLite backup, put it in place of the database and mark a new lineage'),
  ).action(async (backup: string, opts: StoreOptions) => {
    if (opts.store !== undefined) {
      throw new ConfigError('restore from takes SQLite backups: restore PostgreSQL with pg_restore, then run `outpost hub restore mark`');
    }
    const { restoreFromBackup } = await import('../hub/restore.js');
    const mark = await restoreFromBackup(backup, opts.data, opts.partition);
    say(opts, mark, describeMark(mark));
  });

  withStore(
    restore
      .command('mark')
      .description('with the hub stopped: mark a database restored by other means (pg_restore, a file copied by hand) as a new lineage'),
  ).action(async (opts: StoreOptions) => {
    const { markRestored } = await import('../hub/restore.js');
    const mark = await markRestored({ store: opts.store, dataDir: opts.data, partition: opts.partition });
    say(opts, mark, describeMark(mark));
  });

  withStore(restore.command('lost').description('versions agents reported that a restore lost'))
    .option('--pending', 'only those not reapplied yet')
    .action(async (opts: StoreOptions & { pending?: boolean }) => {
      const { openHubStore } = await import('../hub/store/open-store.js');
      const store = await openHubStore({ store: opts.store, dataDir: opts.data, partition: opts.partition });
      let lost;
      try {
        lost = await store.lostDocuments({ pending: opts.pending ?? false, limit: 100_000 });
      } finally {
        await store.close();
      }
      say(
        opts,
        lost,
        lost.length === 0
          ? 'no lost versions reported'
          : table([
              ['COLLECTION', 'KEY', 'VERSION', 'OP', 'ORIGIN', 'REPORTED BY', 'REAPPLIED'],
              ...lost.map((d) => [
                d.collection,
                d.key,
                String(d.version),
                d.op,
                d.origin,
                d.reporters.map((r) => r.agentId).join(','),
                d.reapplied ? `${d.reapplied.outcome}${d.reapplied.lsn === null ? '' : ` @${d.reapplied.lsn}`}` : '-',
              ]),
            ]),
      );
    });

  restore
    .command('reapply')
    .description('commit again, through the running hub, the newest lost version of each document (keeping origin and timestamp)')
    .option('--url <url>', "the hub's HTTP API (env OUTPOST_HUB_URL)", process.env.OUTPOST_HUB_URL ?? 'http://127.0.0.1:8080')
    .option('--admin-token <secret>', 'admin token (env OUTPOST_ADMIN_TOKEN)', process.env.OUTPOST_ADMIN_TOKEN)
    .option('--json', 'machine-readable output')
    .option(
      '--include-unvouched',
      'also versions no report came from their own writer (writes made at the hub, or vouched for only by other devices): read `restore lost` first',
    )
    .action(async (opts: HubClientOptions & { includeUnvouched?: boolean }) => {
      const path = `/v1/restore/reapply${opts.includeUnvouched ? '?include=unvouched' : ''}`;
      const answer = (await callHub(opts, 'POST', path)) as { partitions: Record<string, Record<string, number>> };
      const lines = Object.entries(answer.partitions).map(
        ([partition, outcomes]) =>
          `partition ${partition}: ${
            Object.entries(outcomes)
              .map(([outcome, n]) => `${n} ${outcome}`)
              .join(', ') || 'nothing to reapply'
          }`,
      );
      say(opts, answer, lines.join('\n'));
    });
}

function describeMark(mark: { previous: { id: string; fork: number }; lineage: { id: string; fork: number } }): string {
  return (
    `database marked restored: lineage ${mark.previous.id} -> ${mark.lineage.id}, parting at LSN ${mark.lineage.fork}. ` +
    'Start the hub: agents reconcile and report what they held beyond it (`outpost hub restore lost`, then `reapply`).'
  );
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

async function callHub(opts: HubClientOptions, method: string, path: string): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(`${opts.url.replace(/\/$/, '')}${path}`, {
      method,
      headers: opts.adminToken === undefined ? {} : { authorization: `Bearer ${opts.adminToken}` },
    });
  } catch (cause) {
    throw new HubUnreachableError(opts.url, { cause });
  }
  const text = await response.text();
  const body = (text ? JSON.parse(text) : undefined) as { code?: string; message?: string } | undefined;
  if (!response.ok) {
    const code = body?.code !== undefined && KNOWN_CODES.has(body.code) ? (body.code as ErrorCode) : ErrorCode.INTERNAL;
    throw new OutpostError(code, body?.message ?? `HTTP ${response.status}`);
  }
  return body;
}
