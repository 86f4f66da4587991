import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { ConfigError } from '../shared/errors.js';

interface ExportOptions {
  data: string;
  store?: string;
  out: string;
  config?: string;
  brokerUsername: string;
  brokerPassword?: string;
  listenerPort: string;
}

/**
 * `outpost hub export mosquitto`: Mosquitto's password and ACL files (and a configuration
 * snippet) from the hub's agents and access section, for running the hub with `--broker`.
 * Run it again after every `agents add|revoke` and reload Mosquitto (SIGHUP): that is how a
 * revocation reaches the broker.
 */
export function addBrokerExport(hub: Command): void {
  const exportCommand = hub.command('export').description("write an external broker's authentication and ACL files");
  exportCommand
    .command('mosquitto')
    .description('Mosquitto password file, ACL file and mosquitto.conf snippet')
    .option('--data <dir>', "the hub's data directory (env OUTPOST_DATA)", process.env.OUTPOST_DATA ?? './data/hub')
    .option('--store <url>', "the hub's PostgreSQL store, if it has one (env OUTPOST_STORE)", process.env.OUTPOST_STORE)
    .requiredOption('--out <dir>', 'where to write passwords, acl and mosquitto.conf')
    .option(
      '--config <file>',
      'the hub configuration whose access section says who reads which collection (env OUTPOST_CONFIG)',
      process.env.OUTPOST_CONFIG,
    )
    .option(
      '--broker-username <name>',
      "the hub's broker account (env OUTPOST_BROKER_USERNAME)",
      process.env.OUTPOST_BROKER_USERNAME ?? 'outpost-hub',
    )
    .option(
      '--broker-password <secret>',
      'its password (env OUTPOST_BROKER_PASSWORD); default: keep the one already exported, or generate one and print it once',
    )
    .option('--listener-port <port>', 'the port of the listener in the mosquitto.conf snippet', '1883')
    .action(async (opts: ExportOptions) => {
      const [{ openHubStore }, { loadHubConfig, DEFAULT_HUB_CONFIG, assignment }, { AccessControl }, exporter, { mosquittoHash }] =
        await Promise.all([
          import('../hub/store/open-store.js'),
          import('../hub/config.js'),
          import('../hub/access.js'),
          import('../hub/mosquitto-export.js'),
          import('../hub/mosquitto-password.js'),
        ]);
      const port = Number(opts.listenerPort);
      if (!Number.isInteger(port) || port < 1 || port > 65535)
        throw new ConfigError(`option --listener-port: expected a port number, got ${opts.listenerPort}`);
      const config = opts.config !== undefined ? loadHubConfig(opts.config) : DEFAULT_HUB_CONFIG;
      const password = opts.brokerPassword ?? process.env.OUTPOST_BROKER_PASSWORD;
      const kept = password === undefined ? exporter.existingHubEntry(opts.out, opts.brokerUsername) : undefined;
      const generated = password === undefined && kept === undefined ? randomBytes(24).toString('base64url') : undefined;
      const hubHash = kept ?? (await mosquittoHash((password ?? generated)!));

      const store = await openHubStore({ store: opts.store, dataDir: opts.data });
      let agents;
      try {
        agents = await store.brokerCredentials();
      } finally {
        await store.close();
      }
      // An export that cannot be made as asked throws BrokerExportError, which says what to change.
      const files = exporter.mosquittoFiles({
        agents,
        access: new AccessControl(config.access, false),
        outDir: opts.out,
        hubUser: { username: opts.brokerUsername, mosquittoHash: hubHash },
        listener: { port },
        partitions: assignment(config),
      });
      exporter.writeMosquittoFiles(opts.out, files);

      const say = (line: string): boolean => process.stderr.write(`${line}\n`);
      const partitions = Object.keys(config.partitions);
      say(
        `wrote passwords, acl and mosquitto.conf to ${opts.out}: ${files.exported.length} agent(s) and the hub's account ${opts.brokerUsername}` +
          (partitions.length > 0
            ? ` (and ${partitions.map((p) => exporter.partitionBrokerUser(opts.brokerUsername, p)).join(', ')} for its partitions, same password).`
            : '.'),
      );
      if (opts.config === undefined) {
        say('No --config: with the default access section no agent may read any collection. Pass the file the hub runs with.');
      }
      if (files.withoutHash.length > 0) {
        say(
          `NOT EXPORTED: ${files.withoutHash.join(', ')} — provisioned before the hub kept Mosquitto hashes, so Mosquitto cannot check their tokens. ` +
            'Give each a new token with `outpost hub agents add <agent-id>` (it replaces the old one), then export again.',
        );
      }
      if (generated !== undefined) {
        process.stdout.write(`${generated}\n`);
        say(
          `The hub's broker password above is shown only now: start the hub with OUTPOST_BROKER_PASSWORD set to it (and --broker-username ${opts.brokerUsername}).`,
        );
      } else if (kept !== undefined) {
        say(`Kept the hub account's existing password from ${opts.out}/passwords.`);
      }
      say(
        'Reload Mosquitto to apply them (kill -HUP <pid>, or systemctl reload mosquitto); make the files readable by the user Mosquitto runs as.',
      );
    });
}
