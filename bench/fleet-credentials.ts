/**
 * The fleet benchmark's devices as the hub knows them: each its own agent id, token and local
 * address, provisioned in the hub's database before the hub starts (as `outpost hub agents add`
 * does, in one transaction instead of one process per device).
 *
 * A token is stored as an scrypt hash whose parameters the hash itself carries
 * (`scrypt$N$r$p$salt$hash`, hub/credentials.ts). `hub` provisions at the hub's own cost, about
 * 40 ms of a core per login the hub has not seen since it started; `cheap` at N = 16, which the
 * hub checks in microseconds: the same logins, less the scrypt, to tell what else a reconnect
 * storm costs. Both set up the Mosquitto hash too, as provisioning does.
 */
import { randomBytes, scryptSync } from 'node:crypto';
import { hashToken, newToken } from '../hub/credentials.js';
import { mosquittoHash } from '../hub/mosquitto-password.js';
import { SqliteHubDb } from '../hub/store/sqlite-db.js';
import type { DeviceIdentity } from './fleet-device.js';

export type TokenCost = 'hub' | 'cheap';

/** Devices behind each local address: a site's devices behind its NAT. */
export const DEVICES_PER_ADDRESS = 10;

/**
 * `count` devices, `fleet-0`…; every DEVICES_PER_ADDRESS of them share a local address in
 * 127.1.0.0/16 (all of 127.0.0.0/8 is loopback on Linux), so the hub sees a fleet of many sources.
 */
export function fleetIdentities(count: number): DeviceIdentity[] {
  return Array.from({ length: count }, (_, i) => {
    const site = Math.floor(i / DEVICES_PER_ADDRESS);
    return { id: `fleet-${i}`, token: newToken(), address: `127.1.${Math.floor(site / 250)}.${(site % 250) + 1}` };
  });
}

/** Writes every device's credential into the hub database at `dataDir` (no hub may have it open). */
export async function provisionFleet(dataDir: string, devices: readonly DeviceIdentity[], cost: TokenCost): Promise<void> {
  const hashes: Array<[string, string, string]> = [];
  // Hashing runs on libuv's thread pool; a few dozen at a time keep it busy without flooding it.
  for (let from = 0; from < devices.length; from += 64) {
    hashes.push(
      ...(await Promise.all(
        devices.slice(from, from + 64).map(async (d): Promise<[string, string, string]> => {
          const [hash, mosquitto] = await Promise.all([cost === 'hub' ? hashToken(d.token) : cheapHash(d.token), mosquittoHash(d.token)]);
          return [d.id, hash, mosquitto];
        }),
      )),
    );
  }
  const store = new SqliteHubDb(dataDir);
  try {
    store.transaction(() => {
      for (const [id, hash, mosquitto] of hashes) store.putCredential(id, hash, mosquitto);
    });
  } finally {
    store.close();
  }
}

/** hub/credentials.ts's format at the lowest cost scrypt takes. */
async function cheapHash(token: string): Promise<string> {
  const [n, r, p] = [16, 1, 1];
  const salt = randomBytes(16);
  const hash = scryptSync(token, salt, 32, { N: n, r, p });
  return ['scrypt', n, r, p, salt.toString('base64url'), hash.toString('base64url')].join('$');
}
