import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ObjectChunks } from '../../hub/blobs/object-chunks.js';
import { PgContentStore } from '../../hub/blobs/pg-content-store.js';
import { S3Bucket, type ObjectStoreLocation } from '../../hub/blobs/s3-bucket.js';
import { PgPool } from '../../hub/store/pg-pool.js';
import { BLOB_CHUNK_BYTES } from '../../shared/blobs.js';
import { FaultProxy } from '../chaos/fault-proxy.js';
import { freePort } from '../helpers/ports.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { devHubArgs, OutpostProcess } from '../helpers/processes.js';
import { TestS3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/** Where the hub under test keeps content, and how the test sees it there. */
interface HubContent {
  /** Extra arguments (and environment) for the hub process. */
  args: string[];
  env: Record<string, string>;
  /** Chunks of `hash` the hub holds durably so far (all of them once it is complete). */
  stored(hash: string, chunks: number): Promise<number>;
  /** Whether the content is held whole, checked. */
  whole(hash: string): Promise<boolean>;
  /** Checks that each chunk was kept once, and gives the bytes back as the hub keeps them. */
  keptOnce(hash: string, chunks: number): Promise<Buffer>;
}

/** The embedded default: files under the data directory. */
function contentFiles(dir: string): HubContent {
  const content = join(dir, 'hub', 'content');
  const object = (hash: string): string => join(content, 'objects', hash.slice(0, 2), hash);
  return {
    args: [],
    env: {},
    stored: async (hash, chunks) => {
      const upload = join(content, 'uploads', hash);
      return existsSync(object(hash)) ? chunks : existsSync(upload) ? readdirSync(upload).filter((n) => /^\d+$/.test(n)).length : 0;
    },
    whole: async (hash) => existsSync(join(object(hash), 'size')),
    keptOnce: async (hash, chunks) => {
      const files = readdirSync(object(hash)).filter((n) => /^\d+$/.test(n));
      expect(files.length, 'each chunk once').toBe(chunks);
      expect(existsSync(join(content, 'uploads', hash)), 'nothing left half-uploaded').toBe(false);
      return Buffer.concat(Array.from({ length: chunks }, (_, i) => readFileSync(join(object(hash), String(i)))));
    },
  };
}

/** A PostgreSQL hub keeping content in an S3-compatible bucket. */
function contentObjects(url: string, bucket: ObjectStoreLocation, s3: TestS3Server): HubContent {
  const count = async (query: string, hash: string): Promise<number> => (await sql<{ n: number }>(url, query, [hash]))[0]!.n;
  return {
    args: ['--store', url, '--blob-store', bucket.url, '--blob-store-endpoint', bucket.endpoint!],
    env: s3.env,
    stored: (hash) => count('SELECT count(*)::int AS n FROM blob_chunk_objects WHERE hash = $1', hash),
    whole: async (hash) => (await sql(url, 'SELECT 1 FROM blob_contents WHERE hash = $1 AND complete', [hash])).length === 1,
    keptOnce: async (hash, chunks) => {
      const named = await sql<{ idx: number; object_key: string }>(url, 'SELECT idx, object_key FROM blob_chunk_objects WHERE hash = $1', [
        hash,
      ]);
      expect(new Set(named.map((r) => r.idx)).size, 'each chunk named once').toBe(chunks);
      // A hub killed between a chunk's PUT and its naming leaves that object listed for removal, and only such.
      const listed = new Set(
        (await sql<{ object_key: string }>(url, 'SELECT object_key FROM blob_object_removals')).map((r) => r.object_key),
      );
      const keys = await s3.keys(bucket);
      expect(keys.filter((k) => !listed.has(k)).sort()).toEqual(named.map((r) => r.object_key).sort());
      // The collector removes those once they are as old as the grace for uploads.
      const db = new PgPool(url, {});
      const store = new PgContentStore(db, new ObjectChunks(db, await S3Bucket.open(bucket)));
      try {
        await store.collect(() => true, Date.now() + 1);
        expect(await s3.keys(bucket), 'only the named objects once the collector ran').toEqual(named.map((r) => r.object_key).sort());
        return Buffer.concat(await Promise.all(Array.from({ length: chunks }, (_, i) => store.readChunk(hash, i))));
      } finally {
        await store.close();
        await db.end();
      }
    },
  };
}

const s3 = NO_POSTGRES === undefined ? await TestS3Server.start() : undefined;

/**
 * A 50 MB blob from a device process to a hub process through a link cut every 2 s, the agent
 * SIGKILLed once and the hub SIGKILLed once on the way.
 */
describe('a large blob through faults', () => {
  const processes: OutpostProcess[] = [];
  let proxy: FaultProxy | undefined;
  let cutter: NodeJS.Timeout | undefined;
  afterEach(async () => {
    clearInterval(cutter);
    await proxy?.close();
    await Promise.all(processes.splice(0).map((p) => p.kill('SIGKILL')));
  });

  it('arrives byte-identical, each chunk stored once, and its document commits only once the whole content is there', async () => {
    const dir = tempDir('blob-faults');
    await throughFaults(dir, contentFiles(dir), 50);
  }, 300_000);

  it.skipIf(NO_POSTGRES !== undefined)(
    `does the same on a PostgreSQL hub keeping content in an S3-compatible bucket${NO_POSTGRES ? ` (${NO_POSTGRES})` : ''}`,
    async () => {
      const dir = tempDir('blob-faults');
      const bucket = await s3!.bucket('fleet/');
      await throughFaults(dir, contentObjects(await freshDatabase(), bucket, s3!), 20);
    },
    300_000,
  );

  /** A blob of `mb` MiB from cam-1, through a link cut every 2 s, the agent killed at a third and the hub at two thirds. */
  async function throughFaults(dir: string, held: HubContent, mb: number): Promise<void> {
    const config = join(dir, 'hub.yaml');
    writeFileSync(config, 'collections:\n  clips:\n    blobs: lazy\naccess:\n  default:\n    read: ["*"]\n    write: ["*"]\n');
    const [mqttPort, hubHttp, agentHttp] = await Promise.all([freePort(), freePort(), freePort()]);
    const startHub = async (): Promise<OutpostProcess> => {
      const hub = new OutpostProcess([...devHubArgs(mqttPort, hubHttp, join(dir, 'hub')), '--config', config, ...held.args], held.env);
      processes.push(hub);
      await hub.waitForLog('hub started');
      return hub;
    };
    proxy = await FaultProxy.start({ host: '127.0.0.1', port: mqttPort });
    const startAgent = async (): Promise<OutpostProcess> => {
      const agent = new OutpostProcess([
        'agent',
        '--hub',
        `mqtt://127.0.0.1:${proxy!.port}`,
        '--id',
        'cam-1',
        '--data',
        join(dir, 'cam-1'),
        '--http',
        `127.0.0.1:${agentHttp}`,
        '--reconnect-max-ms',
        '500',
      ]);
      processes.push(agent);
      await agent.waitForLog('agent started');
      return agent;
    };
    let hub = await startHub();
    let agent = await startAgent();

    const clip = randomBytes(mb * 1024 * 1024);
    const sha256 = createHash('sha256').update(clip).digest('hex');
    const chunks = Math.ceil(clip.length / BLOB_CHUNK_BYTES);
    const put = await fetch(`http://127.0.0.1:${agentHttp}/v1/blobs/clips/big`, {
      method: 'PUT',
      headers: { 'content-type': 'video/mp4' },
      body: clip,
    });
    expect(put.status).toBe(200);
    cutter = setInterval(() => proxy!.reset(), 2_000);

    const document = async (): Promise<unknown> => {
      const response = await fetch(`http://127.0.0.1:${hubHttp}/v1/docs/clips/big`).catch(() => undefined);
      return response?.status === 200 ? ((await response.json()) as { value: unknown }).value : undefined;
    };

    await waitFor('a third of the chunks at the hub', async () => (await held.stored(sha256, chunks)) >= chunks / 3, 120_000, 50);
    await agent.kill('SIGKILL');
    agent = await startAgent();
    await waitFor('two thirds of the chunks at the hub', async () => (await held.stored(sha256, chunks)) >= (2 * chunks) / 3, 120_000, 50);
    await hub.kill('SIGKILL');
    hub = await startHub();

    // Watched as it goes: whenever the document is there, the whole content is too.
    const committed = await waitFor(
      'the document at the hub',
      async () => {
        const value = await document();
        if (value !== undefined) expect(await held.whole(sha256), 'the content held whole when its document is seen').toBe(true);
        return value;
      },
      180_000,
      100,
    );
    expect(committed).toEqual({ sha256, size: clip.length, contentType: 'video/mp4' });
    const back = await held.keptOnce(sha256, chunks);
    expect(back.length).toBe(clip.length);
    expect(back.equals(clip), 'byte-identical').toBe(true);
  }
});
