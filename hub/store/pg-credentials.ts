import type { Credential, CredentialListing } from './hub-store.js';
import type { PgPool } from './pg-pool.js';
import { toBrokerCredential, toCredential, toCredentialListing, type CredentialRow } from './rows.js';

/**
 * Agents' credentials on PostgreSQL: the registry of provisioned agents, their token hashes and
 * revocations. Every change bumps `credentials_version` in the same statement, so that other
 * hub processes polling it learn of the change.
 */
export class PgCredentials {
  readonly #db: PgPool;

  constructor(db: PgPool) {
    this.#db = db;
  }

  /** Stores or replaces a credential and bumps the credentials version, in one statement. */
  async put(agentId: string, tokenHash: string, mosquittoHash?: string): Promise<void> {
    await this.#db.query(
      `WITH stored AS (
         INSERT INTO agent_credentials (agent_id, token_hash, created_at, revoked_at, mosquitto_hash) VALUES ($1, $2, $3, NULL, $4)
         ON CONFLICT (agent_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at, revoked_at = NULL,
           mosquitto_hash = excluded.mosquitto_hash, verified_fingerprint = NULL
         RETURNING 1)
       UPDATE hub_meta SET value = value + 1 WHERE name = 'credentials_version' AND EXISTS (SELECT FROM stored)`,
      [agentId, tokenHash, Date.now(), mosquittoHash ?? null],
      'write to',
    );
  }

  async revoke(agentId: string): Promise<boolean> {
    const [row] = await this.#db.query<{ revoked: boolean }>(
      `WITH revoked AS (
         UPDATE agent_credentials SET revoked_at = $1, verified_fingerprint = NULL WHERE agent_id = $2 AND revoked_at IS NULL RETURNING 1
       ), bump AS (
         UPDATE hub_meta SET value = value + 1 WHERE name = 'credentials_version' AND EXISTS (SELECT FROM revoked)
       )
       SELECT EXISTS (SELECT FROM revoked) AS revoked`,
      [Date.now(), agentId],
      'write to',
    );
    return row!.revoked;
  }

  async get(agentId: string): Promise<Credential | undefined> {
    const [row] = await this.#db.query<CredentialRow>(
      'SELECT token_hash, revoked_at, verified_fingerprint FROM agent_credentials WHERE agent_id = $1',
      [agentId],
    );
    return row && toCredential(row);
  }

  /** Not a credentials change: other hubs need not re-check their connections, so no version bump. */
  async rememberVerifiedToken(agentId: string, tokenHash: string, fingerprint: string): Promise<void> {
    await this.#db.query(
      'UPDATE agent_credentials SET verified_fingerprint = $1 WHERE agent_id = $2 AND token_hash = $3 AND revoked_at IS NULL',
      [fingerprint, agentId, tokenHash],
      'write to',
    );
  }

  async list(): Promise<CredentialListing[]> {
    const rows = await this.#db.query<{ agent_id: string; created_at: number; revoked_at: number | null }>(
      'SELECT agent_id, created_at, revoked_at FROM agent_credentials ORDER BY agent_id',
    );
    return rows.map(toCredentialListing);
  }

  async brokerCredentials(): Promise<Array<{ agentId: string; mosquittoHash: string | null }>> {
    const rows = await this.#db.query<{ agent_id: string; mosquitto_hash: string | null }>(
      'SELECT agent_id, mosquitto_hash FROM agent_credentials WHERE revoked_at IS NULL ORDER BY agent_id',
    );
    return rows.map(toBrokerCredential);
  }

  async version(): Promise<number> {
    const [row] = await this.#db.query<{ value: number }>("SELECT value FROM hub_meta WHERE name = 'credentials_version'");
    return row!.value;
  }
}
