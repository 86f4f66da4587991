import type { Command, CommanderError } from 'commander';
import { ConfigError } from '../shared/errors.js';
import type { HubVerifyReport } from '../hub/store/digest-reads.js';
import type { ContentCheck } from '../content/content-scrub.js';

interface VerifyOptions {
  data: string;
  postgres?: string;
  store?: string;
  blobStore?: string;
  blobStoreEndpoint?: string;
  blobStoreRegion?: string;
  partition: string;
  repair?: boolean;
  json?: boolean;
}

/** The store's scrub, and the blob content's. */
type VerifyReport = HubVerifyReport & { content: ContentCheck };

/** Exit statuses, for scripts and monitoring: damage found is not a failure to run. */
const ALL_WELL = 0;
const DAMAGE_FOUND = 1;
const USAGE = 2;

/** Damaged documents the summary names one by one; JSON lists all. */
const NAMED = 20;

/**
 * `outpost hub verify`: the hub database's scrub (HubStore.verify). Every document's row against
 * its stored hash, every collection's and scope bucket's digest against its documents, and the
 * engine's own check;
 * with `--repair` (the hub stopped), damaged documents are restored from the log where it still
 * holds their version and wrong digests rewritten. Exits 0 when all is well, 1 when damage was
 * found (repaired or not), 2 on a usage error.
 */
export function addVerifyCommand(hub: Command): void {
  hub
    .command('verify')
    .description(
      "check the hub's database: every document against its hash, each collection's and scope bucket's digest, the engine's own check, and every blob content against its address",
    )
    .option('--data <dir>', "the hub's data directory, for SQLite (env OUTPOST_DATA)", process.env.OUTPOST_DATA ?? './data/hub')
    .option('--postgres <url>', "the hub's PostgreSQL store instead (env OUTPOST_STORE)", process.env.OUTPOST_STORE)
    .option('--store <url>', 'the same as --postgres, as other hub commands name it')
    .option('--partition <name>', 'the partition whose database to check', 'default')
    .option(
      '--blob-store <url>',
      'the bucket a PostgreSQL hub keeps blob content in (s3://bucket/prefix; env OUTPOST_BLOB_STORE)',
      process.env.OUTPOST_BLOB_STORE,
    )
    .option(
      '--blob-store-endpoint <url>',
      'its S3-compatible server (env OUTPOST_BLOB_STORE_ENDPOINT)',
      process.env.OUTPOST_BLOB_STORE_ENDPOINT,
    )
    .option('--blob-store-region <region>', 'its region (env OUTPOST_BLOB_STORE_REGION)', process.env.OUTPOST_BLOB_STORE_REGION)
    .option(
      '--repair',
      'with the hub stopped: restore damaged documents from the log where it still has them, rewrite wrong digests, drop damaged blob content',
    )
    .option('--json', 'machine-readable output')
    .exitOverride((error: CommanderError) => process.exit(error.exitCode === 0 ? ALL_WELL : USAGE))
    .action(async (opts: VerifyOptions) => {
      const url = opts.store ?? opts.postgres;
      const { openHubStore, isPostgresUrl } = await import('../hub/store/open-store.js');
      if (opts.store !== undefined && opts.postgres !== undefined && opts.store !== opts.postgres) {
        return usage(new ConfigError('--store and --postgres name different databases: give one'));
      }
      if (url !== undefined && !isPostgresUrl(url)) {
        return usage(new ConfigError(`${JSON.stringify(url)} is not a PostgreSQL URL: use postgres://user:password@host:5432/database`));
      }
      const objectStore = opts.blobStore && { url: opts.blobStore, endpoint: opts.blobStoreEndpoint, region: opts.blobStoreRegion };
      const { checkContent } = await import('../content/content-scrub.js');
      let store: Awaited<ReturnType<typeof openHubStore>>;
      try {
        store = await openHubStore({ store: url, dataDir: opts.data, partition: opts.partition, ...(objectStore && { objectStore }) });
      } catch (error) {
        if (error instanceof ConfigError) return usage(error); // --blob-store without PostgreSQL, a bucket that is not there
        throw error;
      }
      let report: VerifyReport;
      try {
        const repair = opts.repair ?? false;
        const database = await store.verify({ repair });
        const content = await checkContent(store.content, repair);
        report = { ...database, content, ok: database.ok && content.damaged.length === 0 };
      } finally {
        await store.close();
      }
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${describe(report, opts.repair ?? false)}\n`);
      process.exitCode = report.ok ? ALL_WELL : DAMAGE_FOUND;
    });
}

function usage(error: ConfigError): void {
  process.stderr.write(`outpost: ${error.message} [${error.code}]\n`);
  process.exitCode = USAGE;
}

/** A short account: what was checked, each problem, and what to do about it. */
export function describe(report: VerifyReport, repair: boolean): string {
  // A hub without scoped collections says what it always said.
  const buckets = report.buckets > 0 ? ` and ${report.buckets} scope buckets` : '';
  const lines = [`checked ${report.documents} documents in ${report.collections} collections${buckets}`];
  for (const d of report.damaged.slice(0, NAMED)) {
    const state = d.restored
      ? 'restored from the log'
      : d.restorable
        ? 'the log still has its version: --repair restores it'
        : 'its version is no longer in the log: restore it from a backup, or write it again';
    lines.push(`damaged: ${d.collection}/${d.key} (version ${d.version}): ${state}`);
  }
  if (report.damaged.length > NAMED) lines.push(`... and ${report.damaged.length - NAMED} more damaged documents (--json lists all)`);
  for (const c of report.digests) {
    lines.push(`digest of ${c.collection}: stored ${c.stored}, its documents sum to ${c.computed}${c.rewritten ? ': rewritten' : ''}`);
  }
  for (const b of report.bucketDigests) {
    lines.push(
      `digest of scope bucket ${b.bucket}: stored ${b.stored}, its documents sum to ${b.computed}${b.rewritten ? ': rewritten' : ''}`,
    );
  }
  const { content } = report;
  lines.push(`checked ${content.checked} blob contents (${(content.bytes / 1e6).toFixed(1)} MB) against their addresses`);
  for (const c of content.damaged.slice(0, NAMED)) {
    const state = c.removed
      ? 'dropped: it reads as unavailable until it is uploaded again'
      : '--repair drops it (readers are told it is unavailable until it is uploaded again)';
    lines.push(`damaged blob content: ${c.hash} (${c.size} bytes): ${state}`);
  }
  const { check, ok, detail } = report.engine;
  lines.push(`${check}: ${ok ? 'ok' : 'FAILED'}${detail === undefined ? '' : ` (${detail})`}`);
  lines.push(verdict(report, repair));
  return lines.join('\n');
}

function verdict(report: VerifyReport, repair: boolean): string {
  if (report.ok) return 'all well';
  const left =
    report.damaged.filter((d) => !d.restored).length +
    report.digests.filter((c) => !c.rewritten).length +
    report.bucketDigests.filter((b) => !b.rewritten).length +
    report.content.damaged.filter((c) => !c.removed).length;
  if (repair && left === 0 && report.engine.ok) return 'damage found, and repaired: run verify again to confirm';
  if (repair) return `damage found; ${left} problem(s) could not be repaired from the log`;
  return 'damage found: run again with --repair, with the hub stopped';
}
