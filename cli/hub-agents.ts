import type { Command } from 'commander';
import { isValidAgentId } from '../shared/topics.js';
import { table } from './agent-client.js';
import { ConfigError } from '../shared/errors.js';

/**
 * `outpost hub agents add | revoke | list`: device identities in the hub's database. Works
 * whether the hub runs or not; a running hub notices within half a second (a revoked agent's
 * connection is closed).
 */
export function addAgentAdmin(hub: Command): void {
  const agents = hub.command('agents').description("provision and revoke agents' credentials");
  const withData = (c: Command): Command =>
    c
      .option('--data <dir>', "the hub's data directory (env OUTPOST_DATA)", process.env.OUTPOST_DATA ?? './data/hub')
      .option('--store <url>', "the hub's PostgreSQL store, if it has one (env OUTPOST_STORE)", process.env.OUTPOST_STORE);
  const open = async (opts: { data: string; store?: string }) => {
    const { openHubStore } = await import('../hub/store/open-store.js');
    return openHubStore({ store: opts.store, dataDir: opts.data });
  };

  withData(
    agents.command('add').argument('<agentId>').description("create (or replace) an agent's credential and print its token once"),
  ).action(async (agentId: string, opts: { data: string; store?: string }) => {
    if (!isValidAgentId(agentId))
      throw new ConfigError(`agent id ${JSON.stringify(agentId)} is invalid: use 1-128 letters, digits, dots, underscores or dashes`);
    const [{ hashToken, newToken }, { mosquittoHash }] = await Promise.all([
      import('../hub/credentials.js'),
      import('../hub/mosquitto-password.js'),
    ]);
    const token = newToken();
    const store = await open(opts);
    try {
      // The Mosquitto hash too, so that `outpost hub export mosquitto` can admit the agent there.
      await store.putCredential(agentId, await hashToken(token), await mosquittoHash(token));
    } finally {
      await store.close();
    }
    process.stdout.write(`${token}\n`);
    process.stderr.write(`agent ${agentId} provisioned. The token above is shown only now: give it to the device as OUTPOST_HUB_TOKEN.\n`);
  });

  withData(
    agents.command('revoke').argument('<agentId>').description("revoke an agent's credential; a connected agent is disconnected"),
  ).action(async (agentId: string, opts: { data: string; store?: string }) => {
    const store = await open(opts);
    try {
      if (!(await store.revokeCredential(agentId))) throw new ConfigError(`agent ${agentId} has no active credential`);
    } finally {
      await store.close();
    }
    process.stdout.write(`agent ${agentId} revoked\n`);
  });

  withData(agents.command('list').description('agents with credentials'))
    .option('--json', 'machine-readable output')
    .action(async (opts: { data: string; store?: string; json?: boolean }) => {
      const store = await open(opts);
      const list = await store.credentials();
      await store.close();
      process.stdout.write(
        opts.json
          ? `${JSON.stringify(list, null, 2)}\n`
          : `${table([
              ['AGENT', 'CREATED', 'STATE'],
              ...list.map((a) => [
                a.agentId,
                new Date(a.createdAt).toISOString(),
                a.revokedAt === null ? 'active' : `revoked ${new Date(a.revokedAt).toISOString()}`,
              ]),
            ])}\n`,
      );
    });
}
