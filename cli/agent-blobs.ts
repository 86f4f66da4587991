import type { Command } from 'commander';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { chunkCount } from '../shared/blobs.js';
import { AgentUnreachableError, InvalidValueError } from '../shared/errors.js';
import { agentAnswer, call, clientCommand, print, table, type ClientOptions } from './agent-client.js';

/**
 * `outpost agent blob put | get | ls`: blobs through a running agent's HTTP API, with a progress
 * bar on stderr (terminals only): of the bytes streamed, and with `put --wait` of the upload to
 * the hub.
 */

const path = (collection: string, key: string): string => `/v1/blobs/${encodeURIComponent(collection)}/${encodeURIComponent(key)}`;

function headers(opts: ClientOptions, more: Record<string, string> = {}): Record<string, string> {
  return { ...more, ...(opts.token !== undefined && { authorization: `Bearer ${opts.token}` }) };
}

/** A progress bar on stderr, or nothing when stderr is not a terminal or output is JSON. */
function progressBar(opts: ClientOptions, label: string): { show: (done: number, total: number) => void; end: () => void } {
  if (!process.stderr.isTTY || opts.json) return { show: () => undefined, end: () => undefined };
  let shown = false;
  return {
    show: (done, total) => {
      const share = total === 0 ? 1 : Math.min(1, done / total);
      const bar = '#'.repeat(Math.round(share * 30)).padEnd(30, '.');
      process.stderr.write(`\r${label} [${bar}] ${Math.round(share * 100)}%  ${mib(done)} of ${mib(total)}   `);
      shown = true;
    },
    end: () => shown && process.stderr.write('\n'),
  };
}

const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** Counts bytes as they pass. */
function counter(onBytes: (total: number) => void): Transform {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      total += chunk.length;
      onBytes(total);
      done(null, chunk);
    },
  });
}

async function request(opts: ClientOptions, url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(`${opts.url.replace(/\/$/, '')}${url}`, init);
  } catch (cause) {
    throw new AgentUnreachableError(opts.url, { cause });
  }
}

interface BlobStatus {
  uploads: { blobs: number; current?: { collection: string; key: string; missingChunks: number } };
}

export function addBlobCommands(agent: Command): void {
  const blob = agent.command('blob').description('store and read blobs (camera stills, bundles, firmware) through a running agent');

  clientCommand(blob, 'put', 'store a file as a blob; it uploads to the hub in the background')
    .argument('<collection>')
    .argument('<key>')
    .argument('<file>')
    .option('--content-type <type>', 'its media type', 'application/octet-stream')
    .option('--wait', 'wait until the hub holds it, showing the upload')
    .action(async (collection: string, key: string, file: string, opts: ClientOptions & { contentType: string; wait?: boolean }) => {
      const size = (await stat(file).catch(() => undefined))?.size;
      if (size === undefined) throw new InvalidValueError(`no file ${file}`);
      const bar = progressBar(opts, 'to the agent');
      const body = Readable.toWeb(createReadStream(file).pipe(counter((n) => bar.show(n, size)))) as ReadableStream<Uint8Array>;
      const response = await request(opts, path(collection, key), {
        method: 'PUT',
        headers: headers(opts, { 'content-type': opts.contentType, 'content-length': String(size) }),
        body,
        duplex: 'half',
      } as RequestInit);
      bar.end();
      const text = await response.text();
      const parsed: unknown = text ? JSON.parse(text) : undefined;
      if (!response.ok) throw agentAnswer(response.status, parsed ?? text);
      const receipt = parsed as { sha256: string; size: number };
      if (opts.wait) await waitForUpload(opts, collection, key, receipt.size);
      print(
        opts,
        receipt,
        () => `stored ${collection}/${key}: ${receipt.size} bytes, sha256 ${receipt.sha256}${opts.wait ? ', held by the hub' : ''}`,
      );
    });

  clientCommand(blob, 'get', "write a blob's content to a file (or stdout), fetching it from the hub if need be")
    .argument('<collection>')
    .argument('<key>')
    .option('--out <file>', 'write here instead of stdout')
    .option('--timeout <ms>', 'how long a download from the hub may take', '60000')
    .action(async (collection: string, key: string, opts: ClientOptions & { out?: string; timeout: string }) => {
      const response = await request(opts, `${path(collection, key)}?timeoutMs=${encodeURIComponent(opts.timeout)}`, {
        headers: headers(opts),
      });
      if (!response.ok || !response.body) throw agentAnswer(response.status, await response.json().catch(() => undefined));
      const size = Number(response.headers.get('content-length'));
      const bar = progressBar(opts, 'from the agent');
      const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
      await pipeline(
        body,
        counter((n) => bar.show(n, size)),
        opts.out !== undefined ? createWriteStream(opts.out) : process.stdout,
      );
      bar.end();
      if (opts.out !== undefined)
        print(
          opts,
          { file: opts.out, size, sha256: response.headers.get('etag')?.replaceAll('"', '') },
          () => `wrote ${size} bytes to ${opts.out}`,
        );
    });

  clientCommand(blob, 'ls', 'list the blobs of a collection')
    .argument('<collection>')
    .option('--prefix <prefix>', 'keys starting with')
    .option('--limit <n>', 'at most', '100')
    .action(async (collection: string, opts: ClientOptions & { prefix?: string; limit: string }) => {
      const query = new URLSearchParams({ limit: opts.limit, ...(opts.prefix !== undefined && { prefix: opts.prefix }) });
      const { docs } = (await call(opts, 'GET', `/v1/docs/${encodeURIComponent(collection)}?${query.toString()}`)) as {
        docs: Array<{ key: string; value: { sha256?: string; size?: number; contentType?: string }; pending: boolean }>;
      };
      print(opts, docs, () =>
        table([
          ['KEY', 'SIZE', 'CONTENT TYPE', 'SHA-256'],
          ...docs.map((d) => [
            d.key + (d.pending ? '*' : ''),
            String(d.value.size ?? '-'),
            d.value.contentType ?? '-',
            d.value.sha256?.slice(0, 16) ?? '-',
          ]),
        ]),
      );
    });
}

/** Polls the agent's status until no upload of this blob waits, showing the chunks the hub still lacks. */
async function waitForUpload(opts: ClientOptions, collection: string, key: string, size: number): Promise<void> {
  const bar = progressBar(opts, 'to the hub');
  const chunks = chunkCount(size);
  let seen = false;
  for (;;) {
    const { blobs } = (await call(opts, 'GET', '/v1/status')) as { blobs: BlobStatus };
    const current = blobs.uploads.current;
    const mine = current?.collection === collection && current.key === key;
    // Uploads go oldest first: once this one was under way and is no longer, the hub holds it.
    if (blobs.uploads.blobs === 0 || (seen && !mine)) break;
    if (mine) {
      seen = true;
      bar.show(((chunks - current.missingChunks) / chunks) * size, size);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  bar.show(size, size);
  bar.end();
}
