import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { afterAll } from 'vitest';
import type { ObjectStoreLocation } from '../../hub/blobs/s3-bucket.js';
import { tempDir } from './temp.js';

/** The keys s3rver signs with. */
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/**
 * An S3-compatible server (s3rver: the S3 REST API over files in a temporary directory) on an
 * ephemeral loopback port, one per test file, closed after it; each test gets a bucket of its own.
 */
export class TestS3Server {
  private constructor(
    private readonly server: S3rver,
    readonly endpoint: string,
    private readonly client: S3Client,
  ) {}

  static async start(): Promise<TestS3Server> {
    const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: tempDir('s3') });
    const { port } = await server.run();
    const endpoint = `http://127.0.0.1:${port}`;
    const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
    const started = new TestS3Server(server, endpoint, client);
    afterAll(() => started.close());
    return started;
  }

  /** The environment a hub process reads the keys from, as an operator gives them. */
  readonly env = { AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey };

  /** A new, empty bucket, as a location for the hub (keys included, for a hub in this process). */
  async bucket(prefix = 'outpost/'): Promise<ObjectStoreLocation> {
    const name = `outpost-${randomBytes(6).toString('hex')}`;
    await this.client.send(new CreateBucketCommand({ Bucket: name }));
    return { url: `s3://${name}/${prefix}`, endpoint: this.endpoint, credentials: CREDENTIALS };
  }

  /** Deletes an object behind the hub's back, as an operator's mistake or a lifecycle rule would. */
  async remove(location: ObjectStoreLocation, key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: bucketOf(location), Key: key }));
  }

  /** Every key in the bucket of `location`, sorted. */
  async keys(location: ObjectStoreLocation): Promise<string[]> {
    const bucket = bucketOf(location);
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: bucket, ...(token && { ContinuationToken: token }) }));
      keys.push(...(page.Contents ?? []).map((c) => c.Key!));
      token = page.NextContinuationToken;
    } while (token);
    return keys.sort();
  }

  async close(): Promise<void> {
    this.client.destroy();
    await this.server.close();
  }
}

const bucketOf = (location: ObjectStoreLocation): string => /^s3:\/\/([^/]+)/.exec(location.url)![1]!;
