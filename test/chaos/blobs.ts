import type Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeCbor } from '../../shared/codec.js';
import { sleep } from '../helpers/wait.js';
import type { History } from './history.js';
import type { ProcessFleet } from './process-fleet.js';
import type { Verdict } from './checker.js';

/** The collection the chaos workload's blobs go to (declared `blobs: lazy`). */
export const BLOB_COLLECTION = 'media';

/**
 * One client putting blobs (20 KB to 400 KB of random bytes) through agent `id`'s HTTP API until
 * `until`, each under a key of its own, recording those acknowledged.
 */
export async function blobWriter(
  fleet: ProcessFleet,
  id: string,
  history: History,
  random: () => number,
  until: () => boolean,
  everyMs: number,
): Promise<void> {
  for (let n = 0; until(); n++) {
    const bytes = randomBytes(20_000 + Math.floor(random() * 380_000));
    const key = `${id}-b${n}`;
    try {
      const response = await fetch(`${fleet.agentUrl(id)}/v1/blobs/${BLOB_COLLECTION}/${key}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream' },
        body: bytes,
      });
      if (response.status === 200) {
        const { sha256, size } = (await response.json()) as { sha256: string; size: number };
        history.blobs.push({ agentId: id, key, sha256, size });
      }
    } catch {
      // The agent is down (killed): nothing was acknowledged.
    }
    await sleep(everyMs * (0.5 + random()));
  }
}

/**
 * Every acknowledged blob committed once, its document naming its content, and that content held
 * whole at the hub with bytes that hash to its address.
 */
export function checkBlobs(hub: Database.Database, hubDir: string, history: History, v: Verdict): void {
  const document = hub.prepare<[string, string], { value: Buffer | null; deleted: number }>(
    'SELECT value, deleted FROM documents WHERE collection = ? AND key = ?',
  );
  const logged = hub.prepare<[string, string], { n: number }>('SELECT count(*) AS n FROM checker_log WHERE collection = ? AND key = ?');
  for (const blob of history.blobs) {
    const id = `blob ${BLOB_COLLECTION}/${blob.key}`;
    const n = logged.get(BLOB_COLLECTION, blob.key)!.n;
    if (n > 1) v.duplicated.push(`${id} ×${n}`);
    const row = document.get(BLOB_COLLECTION, blob.key);
    const value = row?.value ? (decodeCbor(row.value) as { sha256?: string; size?: number }) : undefined;
    if (n === 0 || !value || row!.deleted) {
      v.lost.push(`${id} (never committed)`);
      continue;
    }
    if (value.sha256 !== blob.sha256 || value.size !== blob.size)
      v.wrongOutcome.push(`${id} names ${value.sha256} where ${blob.sha256} was written`);
    const object = join(hubDir, 'content', 'objects', blob.sha256.slice(0, 2), blob.sha256);
    if (!existsSync(join(object, 'size'))) {
      v.lost.push(`${id} (its content is not held whole at the hub)`);
      continue;
    }
    const chunks = readdirSync(object).filter((name) => /^\d+$/.test(name)).length;
    const sha = createHash('sha256');
    let size = 0;
    for (let i = 0; i < chunks; i++) {
      const chunk = readFileSync(join(object, String(i)));
      sha.update(chunk);
      size += chunk.length;
    }
    if (sha.digest('hex') !== blob.sha256 || size !== blob.size) v.corrupt.push(`${id}: the hub's content does not hash to its address`);
  }
}
