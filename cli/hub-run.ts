import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { EmbeddedListenerOptions, ExternalBrokerOptions } from '../hub/hub-process.js';
import { ConfigError } from '../shared/errors.js';
import { flagOf } from './options.js';

type Address = { host: string; port: number };
type Options = Record<string, unknown>;

/** Reads a PEM file named by an option; a missing one is a configuration error naming it. */
export function readPem(o: Options, key: string, required = false): Buffer | undefined {
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

/**
 * `outpost hub`: checks the options, then runs a HubProcess (hub/hub-process.ts) serving the
 * partitions asked for (`--partitions`, default every partition of the config). A fatal error
 * in any partition ends the process once every partition is stopped, so that standbys take
 * them over and a supervisor restarts this one.
 */
export async function runHub(o: Options, log: Logger, onStop: (stop: () => Promise<void>) => void): Promise<void> {
  // Loaded here, not at the top: an agent on a small device does not pay for the hub's modules.
  const [{ loadHubConfig, DEFAULT_HUB_CONFIG }, { isPostgresUrl }, { HubProcess, servedPartitions }] = await Promise.all([
    import('../hub/config.js'),
    import('../hub/store/open-store.js'),
    import('../hub/hub-process.js'),
  ]);
  const url = o.store as string | undefined;
  if (url !== undefined && !isPostgresUrl(url)) {
    throw new ConfigError(
      `option --store: expected postgres://user:password@host:5432/database, got ${JSON.stringify(url)}; leave it out for SQLite in --data`,
    );
  }
  if (o.blobStore !== undefined && url === undefined) {
    throw new ConfigError('option --blob-store needs a PostgreSQL --store: a SQLite hub keeps blob content in files under --data');
  }
  const config = o.config !== undefined ? loadHubConfig(o.config as string) : undefined;
  const partitions = servedPartitions(config ?? DEFAULT_HUB_CONFIG, o.partitions as string[] | undefined, o.broker !== undefined);
  if (o.broker !== undefined && o.tlsPort !== undefined) {
    throw new ConfigError(
      "option --tls-port configures the embedded broker's listener; with --broker, configure TLS on that broker (and --broker-ca here)",
    );
  }
  const hubs = new HubProcess({
    ...(url !== undefined && { storeUrl: url }),
    ...(o.blobStore !== undefined && {
      objectStore: {
        url: o.blobStore as string,
        endpoint: o.blobStoreEndpoint as string | undefined,
        region: o.blobStoreRegion as string | undefined,
      },
    }),
    dataDir: o.data as string,
    partitions,
    mqtt: o.broker !== undefined ? { broker: externalBroker(o) } : { embedded: embeddedListeners(o) },
    ...(o.http !== undefined && { http: o.http as Address }),
    ...(o.adminToken !== undefined && { adminToken: o.adminToken as string }),
    dev: o.dev as boolean,
    authLimits: { concurrency: o.authConcurrency as number, maxBackoffMs: (o.authBackoffMaxSeconds as number) * 1000 },
    maxPullBytesPerSecond: o.maxPullBytesPerSecond as number,
    maxBlobBytes: o.maxBlobBytes as number,
    ...(config && { config }),
    logger: log,
  });
  // A fatal error ends the process with 1 once every partition is stopped (or QUIT_WITHIN_MS passed), also if a signal comes meanwhile.
  let quitting: Promise<void> | undefined;
  hubs.on('fatal', (_error, stopped) => {
    quitting = stopped.then(() => process.exit(1));
  });
  onStop(() => quitting ?? hubs.stop());
  await hubs.start();
}

/** `--broker` and its account; the CA file is read now. */
function externalBroker(o: Options): ExternalBrokerOptions {
  return {
    url: o.broker as string,
    username: o.brokerUsername as string,
    ...(o.brokerPassword !== undefined && { password: o.brokerPassword as string }),
    ...(o.brokerCa !== undefined && { ca: readPem(o, 'brokerCa')! }),
  };
}

/** The embedded broker's listeners; with `--tls-port`, its certificate files are read now. */
function embeddedListeners(o: Options): EmbeddedListenerOptions {
  return {
    port: o.port as number,
    host: o.host as string,
    connectsPerAddress: o.connectsPerAddress as number,
    maxConnectBytes: o.maxConnectBytes as number,
    maxQueuedBytes: o.maxQueuedBytes as number,
    maxInboundBytesPerSecond: o.maxInboundBytesPerSecond as number,
    maxPendingLogins: o.maxPendingLogins as number,
    maxPendingLoginsPerAddress: o.maxPendingLoginsPerAddress as number,
    ...(o.tlsPort !== undefined && {
      plain: !(o.tlsOnly as boolean),
      tls: {
        port: o.tlsPort as number,
        cert: readPem(o, 'tlsCert', true)!,
        key: readPem(o, 'tlsKey', true)!,
        ...(o.tlsCa !== undefined && { ca: readPem(o, 'tlsCa')! }),
        requireClientCert: o.tlsRequireClientCert as boolean,
      },
    }),
  };
}
