import type { Command } from 'commander';
import { isValidAgentId } from '../shared/topics.js';
import { table } from './agent-client.js';
import { ConfigError } from '../shared/errors.js';

type StoreOptions = { data: string; store?: string };

/**
 * `outpost hub agents add | label | revoke | list`: device identities and labels in the hub's
 * database. Works whether the hub runs or not; a running hub notices within half a second (a
 * revoked agent's connection is closed, changed labels are reloaded).
 */
export function addAgentAdmin(hub: Command): void {
  const agents = hub.command('agents').description('provision, label and revoke agents');
  const withData = (c: Command): Command =>
    c
      .option('--data <dir>', "the hub's data directory (env OUTPOST_DATA)", process.env.OUTPOST_DATA ?? './data/hub')
      .option('--store <url>', "the hub's PostgreSQL store, if it has one (env OUTPOST_STORE)", process.env.OUTPOST_STORE);
  const open = async (opts: StoreOptions) => {
    const { openHubStore } = await import('../hub/store/open-store.js');
    return openHubStore({ store: opts.store, dataDir: opts.data });
  };

  withData(
    agents
      .command('add')
      .argument('<agentId>')
      .description("create (or replace) an agent's credential and print its token once")
      .option('--label <name=value>', 'set a label (repeatable); scope rules read it as {label.NAME}', collect, []),
  ).action(async (agentId: string, opts: StoreOptions & { label: string[] }) => {
    checkAgentId(agentId);
    const [{ hashToken, newToken }, { mosquittoHash }, { formatLabels, parseLabelChanges }] = await Promise.all([
      import('../hub/credentials.js'),
      import('../hub/mosquitto-password.js'),
      import('../hub/labels.js'),
    ]);
    const change = parseLabelChanges(opts.label);
    if (change.unset.length > 0)
      throw new ConfigError(`--label sets labels (name=value); remove one with \`outpost hub agents label ${agentId} name-\``);
    const token = newToken();
    const store = await open(opts);
    let labels: Record<string, string> | undefined;
    try {
      // Labels first: refused (one too many, say), they leave no credential behind whose token nobody saw.
      if (opts.label.length > 0) labels = await store.setLabels(agentId, change.set, []);
      // The Mosquitto hash too, so that `outpost hub export mosquitto` can admit the agent there.
      await store.putCredential(agentId, await hashToken(token), await mosquittoHash(token));
    } finally {
      await store.close();
    }
    process.stdout.write(`${token}\n`);
    process.stderr.write(
      `agent ${agentId} provisioned${labels ? ` with labels ${formatLabels(labels)}` : ''}. ` +
        'The token above is shown only now: give it to the device as OUTPOST_HUB_TOKEN.\n',
    );
  });

  withData(
    agents
      .command('label')
      .argument('<agentId>')
      .argument('[changes...]', 'name=value sets a label, name- removes it; none: show the labels')
      .description("set or remove an agent's labels (any agent id, provisioned or not) and print them")
      .option('--json', 'machine-readable output'),
  ).action(async (agentId: string, changes: string[], opts: StoreOptions & { json?: boolean }) => {
    checkAgentId(agentId);
    const { parseLabelChanges } = await import('../hub/labels.js');
    const change = parseLabelChanges(changes);
    const store = await open(opts);
    let labels: Record<string, string>;
    try {
      labels = changes.length === 0 ? await store.labels(agentId) : await store.setLabels(agentId, change.set, change.unset);
    } finally {
      await store.close();
    }
    if (opts.json) process.stdout.write(`${JSON.stringify(labels, null, 2)}\n`);
    else if (Object.keys(labels).length === 0) process.stderr.write(`agent ${agentId} has no labels\n`);
    // One label a line, as the command takes it: everything after the first = is the value.
    else
      process.stdout.write(
        Object.entries(labels)
          .map(([name, value]) => `${name}=${value}\n`)
          .join(''),
      );
  });

  withData(
    agents.command('revoke').argument('<agentId>').description("revoke an agent's credential; a connected agent is disconnected"),
  ).action(async (agentId: string, opts: StoreOptions) => {
    const store = await open(opts);
    try {
      if (!(await store.revokeCredential(agentId))) throw new ConfigError(`agent ${agentId} has no active credential`);
    } finally {
      await store.close();
    }
    process.stdout.write(`agent ${agentId} revoked\n`);
  });

  withData(agents.command('list').description('agents with credentials or labels'))
    .option('--json', 'machine-readable output')
    .action(async (opts: StoreOptions & { json?: boolean }) => {
      const [store, { formatLabels, noLabels }] = await Promise.all([open(opts), import('../hub/labels.js')]);
      let credentials, labels;
      try {
        [credentials, labels] = await Promise.all([store.credentials(), store.allLabels()]);
      } finally {
        await store.close();
      }
      const byId = new Map(credentials.map((c) => [c.agentId, c]));
      // Agents labelled but never provisioned (a --dev hub admits them) are listed too.
      const list = [...new Set([...byId.keys(), ...labels.keys()])].sort().map((agentId) => ({
        agentId,
        createdAt: byId.get(agentId)?.createdAt ?? null,
        revokedAt: byId.get(agentId)?.revokedAt ?? null,
        labels: labels.get(agentId) ?? noLabels(),
      }));
      process.stdout.write(
        opts.json
          ? `${JSON.stringify(list, null, 2)}\n`
          : `${table([
              ['AGENT', 'CREATED', 'STATE', 'LABELS'],
              ...list.map((a) => [
                a.agentId,
                a.createdAt === null ? '-' : new Date(a.createdAt).toISOString(),
                a.createdAt === null ? 'no credential' : a.revokedAt === null ? 'active' : `revoked ${new Date(a.revokedAt).toISOString()}`,
                formatLabels(a.labels),
              ]),
            ])}\n`,
      );
    });
}

function checkAgentId(agentId: string): void {
  if (!isValidAgentId(agentId))
    throw new ConfigError(`agent id ${JSON.stringify(agentId)} is invalid: use 1-128 letters, digits, dots, underscores or dashes`);
}

/** Commander's way to take a repeatable option: each occurrence appended. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
