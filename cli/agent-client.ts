import type { Command } from 'commander';
import { AgentUnreachableError, ErrorCode, InvalidValueError, OutpostError } from '../shared/errors.js';

/** Talks to a running agent's HTTP API: `outpost agent status | get | put | del | ls | sync | watch`. */
export interface ClientOptions {
  url: string;
  token?: string;
  json?: boolean;
}

export async function call(opts: ClientOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(`${opts.url.replace(/\/$/, '')}${path}`, {
      method,
      headers: {
        ...(body !== undefined && { 'content-type': 'application/json' }),
        ...(opts.token !== undefined && { authorization: `Bearer ${opts.token}` }),
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
  } catch (cause) {
    throw new AgentUnreachableError(opts.url, { cause });
  }
  const text = await response.text();
  const parsed: unknown = text ? JSON.parse(text) : undefined;
  if (!response.ok && response.status !== 202) {
    throw agentAnswer(response.status, parsed ?? text);
  }
  return parsed;
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

/** The agent's error answer as the error it names (its codes are Outpost's); anything else is internal. */
export function agentAnswer(status: number, body: unknown): OutpostError {
  const { code, message } = (typeof body === 'object' && body !== null ? body : {}) as { code?: unknown; message?: unknown };
  const text = typeof message === 'string' ? message : `HTTP ${status}: ${typeof body === 'string' ? body : JSON.stringify(body)}`;
  return new OutpostError(typeof code === 'string' && KNOWN_CODES.has(code) ? (code as ErrorCode) : ErrorCode.INTERNAL, text);
}

/** Columns padded to their widest cell: readable in a terminal, no dependency needed. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function print(opts: ClientOptions, value: unknown, human: () => string): void {
  process.stdout.write(`${opts.json ? JSON.stringify(value, null, 2) : human()}\n`);
}

function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidValueError(`it must be JSON, e.g. '{"celsius": 21.5}' or '"text"'; got ${text}`);
  }
}

/** A progress bar on stderr while a long sync uploads and catches up (terminals only). */
function showProgress(opts: ClientOptions): { stop: () => void } {
  let total = 0;
  const timer = setInterval(() => {
    void call(opts, 'GET', '/v1/status').then(
      (s) => {
        const { outboxDepth, collections } = s as { outboxDepth: number; collections: Record<string, { lag: number }> };
        const remaining = outboxDepth + Object.values(collections).reduce((sum, c) => sum + c.lag, 0);
        total = Math.max(total, remaining);
        const done = total === 0 ? 1 : (total - remaining) / total;
        const width = 30;
        const bar = '#'.repeat(Math.round(done * width)).padEnd(width, '.');
        process.stderr.write(`\r[${bar}] ${Math.round(done * 100)}%  ${outboxDepth} to upload, ${remaining - outboxDepth} to apply   `);
      },
      () => undefined,
    );
  }, 250);
  return {
    stop: () => {
      clearInterval(timer);
      process.stderr.write('\n');
    },
  };
}

/** A subcommand of `parent` that talks to a running agent: its URL, token and output options. */
export function clientCommand(parent: Command, name: string, description: string): Command {
  return parent
    .command(name)
    .description(description)
    .option('--url <url>', 'agent HTTP API (env OUTPOST_AGENT_URL)', process.env.OUTPOST_AGENT_URL ?? 'http://127.0.0.1:7801')
    .option('--token <secret>', 'bearer token (env OUTPOST_TOKEN)', process.env.OUTPOST_TOKEN)
    .option('--json', 'machine-readable output');
}

export function addClientCommands(agent: Command): void {
  const client = (name: string, description: string): Command => clientCommand(agent, name, description);

  client('status', 'connection, outbox and lag of a running agent').action(async (opts: ClientOptions) => {
    const s = (await call(opts, 'GET', '/v1/status')) as {
      agentId: string;
      connected: boolean;
      outboxDepth: number;
      appliedLsn: number;
      lastSyncAt?: string;
      nextWindow?: string;
      collections: Record<string, { appliedLsn: number; lag: number; pending: number; oldestPendingAgeMs?: number }>;
    };
    print(opts, s, () =>
      [
        `agent ${s.agentId}: ${s.connected ? 'connected' : 'offline'}, ${s.outboxDepth} pending, applied LSN ${s.appliedLsn}` +
          `${s.lastSyncAt ? `, last sync ${s.lastSyncAt}` : ''}${s.nextWindow ? `, next window ${s.nextWindow}` : ''}`,
        '',
        table([
          ['COLLECTION', 'APPLIED LSN', 'LAG', 'PENDING', 'OLDEST PENDING'],
          ...Object.entries(s.collections).map(([c, v]) => [
            c,
            String(v.appliedLsn),
            String(v.lag),
            String(v.pending),
            v.oldestPendingAgeMs === undefined ? '-' : `${Math.round(v.oldestPendingAgeMs / 1000)} s`,
          ]),
        ]),
      ].join('\n'),
    );
  });

  client('get', 'read a document')
    .argument('<collection>')
    .argument('<key>')
    .option('--confirmed', 'only what the hub confirmed')
    .action(async (collection: string, key: string, opts: ClientOptions & { confirmed?: boolean }) => {
      const doc = (await call(
        opts,
        'GET',
        `/v1/docs/${encodeURIComponent(collection)}/${encodeURIComponent(key)}${opts.confirmed ? '?confirmed=true' : ''}`,
      )) as { value: unknown; version: number; pending: boolean };
      print(
        opts,
        doc,
        () => `${JSON.stringify(doc.value, null, 2)}\n(version ${doc.version}${doc.pending ? ', with pending local writes' : ''})`,
      );
    });

  client('put', 'store a document (value as JSON)')
    .argument('<collection>')
    .argument('<key>')
    .argument('<json>')
    .option('--durability <level>', 'local, hub or replicas:N', 'local')
    .action(async (collection: string, key: string, json: string, opts: ClientOptions & { durability: string }) => {
      const receipt = (await call(
        opts,
        'PUT',
        `/v1/docs/${encodeURIComponent(collection)}/${encodeURIComponent(key)}?durability=${encodeURIComponent(opts.durability)}`,
        parseValue(json),
      )) as { seq: number; lsn?: number };
      print(opts, receipt, () => `stored as write ${receipt.seq}${receipt.lsn !== undefined ? `, committed at LSN ${receipt.lsn}` : ''}`);
    });

  client('del', 'delete a document')
    .argument('<collection>')
    .argument('<key>')
    .action(async (collection: string, key: string, opts: ClientOptions) => {
      const receipt = (await call(opts, 'DELETE', `/v1/docs/${encodeURIComponent(collection)}/${encodeURIComponent(key)}`)) as {
        seq: number;
      };
      print(opts, receipt, () => `deleted (write ${receipt.seq})`);
    });

  client('ls', 'list documents of a collection')
    .argument('<collection>')
    .option('--prefix <prefix>', 'keys starting with')
    .option('--limit <n>', 'at most', '100')
    .action(async (collection: string, opts: ClientOptions & { prefix?: string; limit: string }) => {
      const query = new URLSearchParams({ limit: opts.limit, ...(opts.prefix !== undefined && { prefix: opts.prefix }) });
      const { docs } = (await call(opts, 'GET', `/v1/docs/${encodeURIComponent(collection)}?${query.toString()}`)) as {
        docs: Array<{ key: string; value: unknown; version: number; pending: boolean }>;
      };
      print(opts, docs, () =>
        table([
          ['KEY', 'VERSION', 'VALUE'],
          ...docs.map((d) => [d.key, `${d.version}${d.pending ? '*' : ''}`, JSON.stringify(d.value).slice(0, 80)]),
        ]),
      );
    });

  client('sync', 'sync now: connect, upload, catch up')
    .option('--timeout <ms>', 'give up waiting after', '30000')
    .action(async (opts: ClientOptions & { timeout: string }) => {
      const progress = process.stderr.isTTY && !opts.json ? showProgress(opts) : undefined;
      const result = (await call(opts, 'POST', `/v1/sync?timeoutMs=${encodeURIComponent(opts.timeout)}`).finally(() =>
        progress?.stop(),
      )) as { done: boolean; status: { outboxDepth: number } };
      print(opts, result, () => (result.done ? 'synced: nothing pending' : `still syncing: ${result.status.outboxDepth} pending`));
      if (!result.done) process.exitCode = 2;
    });

  client('watch', 'follow committed changes as they are applied')
    .option('--collection <name>', 'only this collection')
    .action(async (opts: ClientOptions & { collection?: string }) => {
      const response = await fetch(
        `${opts.url.replace(/\/$/, '')}/v1/changes${opts.collection ? `?collection=${encodeURIComponent(opts.collection)}` : ''}`,
        {
          headers: opts.token !== undefined ? { authorization: `Bearer ${opts.token}` } : {},
        },
      );
      if (!response.ok || !response.body) throw agentAnswer(response.status, await response.text());
      let buffer = '';
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += Buffer.from(chunk).toString('utf8');
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const type = /^event: (.*)$/m.exec(event)?.[1];
          const data = /^data: (.*)$/m.exec(event)?.[1];
          if (!type || !data) continue;
          if (opts.json) process.stdout.write(`${data}\n`);
          else {
            const c = JSON.parse(data) as {
              c?: string;
              collection?: string;
              k?: string;
              key?: string;
              op?: string;
              lsn?: number;
              outcome?: string;
            };
            process.stdout.write(
              type === 'change' ? `${c.lsn} ${c.op} ${c.c}/${c.k}\n` : `${type} ${c.outcome} ${c.collection}/${c.key}\n`,
            );
          }
        }
      }
    });
}
