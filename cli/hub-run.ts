import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { HubConfig } from '../hub/config.js';
import type { HubBase, HubCommonOptions } from '../hub/hub-base.js';
import type { LeaderLock } from '../hub/leadership.js';
import type { HubStore } from '../hub/store/hub-store.js';
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

/** Longest a stop may take before the process exits anyway: a store that hangs must not keep a deposed process alive. */
const QUIT_WITHIN_MS = 10_000;

/**
 * `outpost hub`: one hub per partition this process serves (`--partitions`, default every
 * partition of the config). Each partition is started on its own: on PostgreSQL it first waits
 * for that partition's leader lock, so a process may lead some partitions and stand by for
 * others at once. The HTTP API is the first served partition's (it routes each collection to
 * its partition's hub in this process). One partition's store refusing this process, or its
 * lock being lost, stops the whole process: its partitions fail over to standbys.
 */
export async function runHub(o: Options, log: Logger, onStop: (stop: () => Promise<void>) => void): Promise<void> {
  const [{ loadHubConfig, DEFAULT_HUB_CONFIG, partitionsOf }, { isPostgresUrl, openHubStore }] = await Promise.all([
    import('../hub/config.js'),
    import('../hub/store/open-store.js'),
  ]);
  const url = o.store as string | undefined;
  if (url !== undefined && !isPostgresUrl(url)) {
    throw new ConfigError(
      `option --store: expected postgres://user:password@host:5432/database, got ${JSON.stringify(url)}; leave it out for SQLite in --data`,
    );
  }
  const config = o.config !== undefined ? loadHubConfig(o.config as string) : undefined;
  const served = servedPartitions(o, config ?? DEFAULT_HUB_CONFIG, partitionsOf);
  if (o.broker !== undefined && o.tlsPort !== undefined) {
    throw new ConfigError(
      "option --tls-port configures the embedded broker's listener; with --broker, configure TLS on that broker (and --broker-ca here)",
    );
  }
  const dataDir = o.data as string;
  const leading = new Map<string, HubBase>();
  const locks: LeaderLock[] = [];
  const standingBy = new AbortController();
  let registry: HubStore | undefined;
  let stopping: Promise<void> | undefined;

  /** Partitions still starting: a stop waits for them (bounded), so that none connects after its lock is released. */
  const starting = new Set<Promise<void>>();

  const stopAll = (): Promise<void> =>
    (stopping ??= (async () => {
      standingBy.abort(new Error('the hub is stopping'));
      await Promise.race([Promise.allSettled([...starting]), new Promise((resolve) => setTimeout(resolve, QUIT_WITHIN_MS).unref())]);
      await Promise.allSettled([...leading.values()].map((hub) => hub.stop()));
      await Promise.allSettled(locks.map((lock) => lock.release()));
      await registry?.close();
    })());
  // Once, and bounded: stop every partition, so that standbys take them all over.
  const quit = (why: string, partition: string, error: Error): void => {
    if (stopping) return;
    log.error({ partition, err: error.message }, why);
    setTimeout(() => process.exit(1), QUIT_WITHIN_MS).unref();
    void stopAll().finally(() => process.exit(1));
  };
  onStop(stopAll);

  // Agents' credentials live in the default partition's store; another partition's hub reads them there.
  if (served.some((p) => p !== 'default')) {
    registry = await openHubStore({ store: url, dataDir, maxConnections: 2 });
  }

  /**
   * Waits for a partition's lock. Once this process leads some partition, a failure while it
   * stands by for another (a dropped connection) is retried, not allowed to stop what it leads;
   * before that, it fails the start (a wrong --store is said at once).
   */
  const acquire = async (partition: string): Promise<LeaderLock> => {
    const { LeaderLock } = await import('../hub/leadership.js');
    for (let delayMs = 1_000; ; delayMs = Math.min(delayMs * 2, 10_000)) {
      try {
        return await LeaderLock.acquire(url!, { log, partition, signal: standingBy.signal });
      } catch (error) {
        if (standingBy.signal.aborted || leading.size === 0) throw error;
        log.warn(
          { partition, err: (error as Error).message, retryInMs: delayMs },
          "could not stand by for this partition's lock; trying again",
        );
        await sleep(delayMs, undefined, { signal: standingBy.signal, ref: false });
      }
    }
  };

  const startPartition = async (partition: string, index: number): Promise<void> => {
    // On PostgreSQL several hub processes may share the database: per partition, one leads and the others stand by.
    const lock = url === undefined ? undefined : await acquire(partition);
    if (lock) {
      if (stopping) {
        await lock.release();
        return;
      }
      locks.push(lock);
      lock.onLost((error) => quit('lost the leader lock; stopping', partition, error));
    }
    const store = await openHubStore({ store: url, dataDir, partition, ...(lock && { epoch: lock.epoch }) });
    const common: HubCommonOptions = {
      dataDir,
      store,
      partition,
      ...(lock && { epoch: lock.epoch }),
      dev: o.dev as boolean,
      logger: log,
      ...(partition !== 'default' && registry && { registry }),
      // The HTTP API is the first served partition's only; it reaches the others through `leading`.
      ...(index === 0 && o.http !== undefined && { http: o.http as Address }),
      ...(o.adminToken !== undefined && { adminToken: o.adminToken as string }),
      ...(config && { config }),
      partitionHubs: () => leading,
    };
    let hub: HubBase;
    if (o.broker !== undefined) {
      const { BrokerClientHub } = await import('../hub/external-broker.js');
      hub = await BrokerClientHub.start({
        ...common,
        broker: {
          url: o.broker as string,
          username: o.brokerUsername as string,
          ...(o.brokerPassword !== undefined && { password: o.brokerPassword as string }),
          ...(o.brokerCa !== undefined && { ca: readPem(o, 'brokerCa')! }),
        },
      });
    } else {
      // Loaded here, not at the top: an agent on a small device does not pay for the broker's modules.
      const { Hub } = await import('../hub/hub.js');
      hub = await Hub.start({
        ...common,
        port: o.port as number,
        host: o.host as string,
        connectsPerAddress: o.connectsPerAddress as number,
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
      });
    }
    if (stopping) {
      await hub.stop();
      return;
    }
    leading.set(partition, hub);
    // Deposed, or another writer committed: this process can commit nothing more. Stop, so that
    // a supervisor restarts it (it then stands by, or reopens the store at the true head).
    hub.core.on('fatal', (error) => quit('the store refuses this hub as its writer; stopping', partition, error));
  };

  try {
    await Promise.all(
      served.map((partition, index) => {
        const start = startPartition(partition, index);
        const tracked = start.catch(() => undefined).finally(() => starting.delete(tracked));
        starting.add(tracked);
        return start;
      }),
    );
  } catch (error) {
    if (stopping) return; // a signal stopped the process while partitions were starting
    await stopAll();
    throw error;
  }
  if (served.length > 1 || served[0] !== 'default') log.info({ partitions: served }, 'leading every partition this process serves');
}

/** `--partitions`, checked against the config; default every partition of the config. */
function servedPartitions(o: Options, config: HubConfig, partitionsOf: (config: HubConfig) => string[]): string[] {
  const known = partitionsOf(config);
  const asked = o.partitions === undefined ? known : [...new Set((o.partitions as string[]).map((p) => p.trim()).filter((p) => p !== ''))];
  if (asked.length === 0) throw new ConfigError('option --partitions: name at least one partition');
  const unknown = asked.filter((p) => !known.includes(p));
  if (unknown.length > 0) {
    throw new ConfigError(
      `option --partitions: ${unknown.join(', ')} ${unknown.length === 1 ? 'is not a partition' : 'are not partitions'} of the hub config ` +
        `(it has ${known.join(', ')}); partitions are declared in the config's partitions section`,
    );
  }
  if (o.broker === undefined && known.length > 1) {
    throw new ConfigError(
      `the hub config assigns collections to partitions (${known.slice(1).join(', ')}): partitions need an external broker (--broker) ` +
        'that the hub processes share, because each agent connects to one broker and each partition may be led by another process; ' +
        'the embedded broker serves a single hub',
    );
  }
  return asked;
}
