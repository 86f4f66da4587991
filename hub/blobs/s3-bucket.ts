import type * as S3Sdk from '@aws-sdk/client-s3';

type Sdk = typeof S3Sdk;
type S3Client = S3Sdk.S3Client;
import { ConfigError, ErrorCode, OutpostError } from '../../shared/errors.js';

/**
 * Where a PostgreSQL hub keeps blob content instead of its database: a bucket of an
 * S3-compatible object store (AWS S3, MinIO, Ceph, Garage, R2, …).
 */
export interface ObjectStoreLocation {
  /** `s3://bucket` or `s3://bucket/prefix/`: every object the hub writes is under the prefix. */
  url: string;
  /** An S3-compatible server's URL (path-style addressing); absent: AWS S3 itself. */
  endpoint?: string | undefined;
  /** Default: AWS_REGION from the environment, else us-east-1 (what S3-compatible servers expect). */
  region?: string | undefined;
  /**
   * Keys to sign with; absent: the AWS SDK's default chain (AWS_ACCESS_KEY_ID and
   * AWS_SECRET_ACCESS_KEY, a profile, an instance or pod role), so that no secret needs to be
   * on a command line or in a config file.
   */
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
  /** Longest one request may take before it fails and is retried (default 60 s). */
  requestTimeoutMs?: number | undefined;
}

/** The object store could not be reached or refused what the hub asked: retryable, nothing is lost. */
export class ObjectStoreFailedError extends OutpostError {
  constructor(where: string, action: string, options?: { cause?: unknown }) {
    super(
      ErrorCode.STORAGE_FAILED,
      `could not ${action} the object store at ${where}: ${String((options?.cause as Error | undefined)?.message ?? 'unknown error')}`,
      options,
    );
  }
}

const BUCKET_URL = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/;

/** Bucket and key prefix of an `s3://bucket/prefix` URL; a prefix always ends in `/` (or is empty). */
export function parseBucketUrl(url: string): { bucket: string; prefix: string } {
  const match = BUCKET_URL.exec(url);
  if (!match) {
    throw new ConfigError(`object store ${JSON.stringify(url)} is not an S3 bucket URL: use s3://bucket or s3://bucket/prefix`);
  }
  const prefix = (match[2] ?? '').replace(/\/+$/, '');
  return { bucket: match[1]!, prefix: prefix === '' ? '' : `${prefix}/` };
}

/** Deletions in flight at once. */
const DELETES_AT_ONCE = 8;

/**
 * The few object operations the hub needs, over the AWS SDK (loaded only when a hub is given an
 * object store). Every failure is an ObjectStoreFailedError naming the bucket, never a key.
 */
export class S3Bucket {
  readonly where: string;

  private constructor(
    private readonly client: S3Client,
    private readonly sdk: Sdk,
    readonly bucket: string,
    readonly prefix: string,
    endpoint: string | undefined,
  ) {
    this.where = `s3://${bucket}/${prefix}${endpoint === undefined ? '' : ` (${endpoint})`}`;
  }

  /** Connects and checks that the bucket is there and may be read: a wrong name or key fails the hub's start, not its first upload. */
  static async open(location: ObjectStoreLocation): Promise<S3Bucket> {
    const { bucket, prefix } = parseBucketUrl(location.url);
    const sdk = await import('@aws-sdk/client-s3');
    const client = new sdk.S3Client({
      region: location.region ?? process.env.AWS_REGION ?? 'us-east-1',
      ...(location.endpoint !== undefined && { endpoint: location.endpoint, forcePathStyle: true }),
      ...(location.credentials && { credentials: location.credentials }),
      // Checksums only where S3 requires them: many S3-compatible servers refuse the trailers
      // newer SDKs add by default. Content is checked against its SHA-256 here anyway.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // A connection that hangs (a dropped NAT mapping, a stalled server) must fail and be
      // retried, not hold a device's uploads behind it for good: the SDK waits forever by default.
      requestHandler: { connectionTimeout: 10_000, requestTimeout: location.requestTimeoutMs ?? 60_000, throwOnRequestTimeout: true },
    });
    const opened = new S3Bucket(client, sdk, bucket, prefix, location.endpoint);
    try {
      await client.send(new sdk.HeadBucketCommand({ Bucket: bucket }));
    } catch (cause) {
      client.destroy();
      const status = statusOf(cause);
      if (status === 404) throw new ConfigError(`bucket ${bucket} does not exist at ${opened.where}: create it, or name another`);
      if (status === 403) {
        throw new ConfigError(
          `the object store at ${opened.where} refused the hub's credentials: give it keys that may read and write the bucket`,
        );
      }
      throw new ObjectStoreFailedError(opened.where, 'reach', { cause });
    }
    return opened;
  }

  /** Writes an object; it is durable once this resolves (S3 acknowledges a PUT once stored). */
  async put(key: string, bytes: Uint8Array): Promise<void> {
    await this.#wrap('write to', () => this.client.send(new this.sdk.PutObjectCommand({ Bucket: this.bucket, Key: key, Body: bytes })));
  }

  /** An object's bytes; undefined only when the bucket answers that it does not have it. */
  async get(key: string): Promise<Buffer | undefined> {
    try {
      const object = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return Buffer.from(await object.Body!.transformToByteArray());
    } catch (cause) {
      if (statusOf(cause) === 404) return undefined;
      throw new ObjectStoreFailedError(this.where, 'read', { cause });
    }
  }

  /** Whether the bucket has an object (false only when it answers that it has not). */
  async has(key: string): Promise<boolean> {
    try {
      await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (cause) {
      if (statusOf(cause) === 404) return false;
      throw new ObjectStoreFailedError(this.where, 'read', { cause });
    }
  }

  /**
   * Deletes objects, absent ones included, a few at a time. One request each, not DeleteObjects:
   * newer SDKs sign that with a CRC32 where several S3-compatible servers demand Content-MD5.
   */
  async remove(keys: readonly string[]): Promise<void> {
    for (let at = 0; at < keys.length; at += DELETES_AT_ONCE) {
      await Promise.all(
        keys
          .slice(at, at + DELETES_AT_ONCE)
          .map((Key) => this.#wrap('delete from', () => this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.bucket, Key })))),
      );
    }
  }

  close(): void {
    this.client.destroy();
  }

  async #wrap<T>(action: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (cause) {
      throw new ObjectStoreFailedError(this.where, action, { cause });
    }
  }
}

/** The HTTP status an SDK error carries, if it came from the server. */
function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}
