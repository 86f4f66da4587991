import type { Credential, CredentialListing } from './hub-store.js';
import { toBrokerCredential, toCredential, toCredentialListing, type CredentialRow } from './rows.js';
import type { SqliteConnection } from './sqlite-connection.js';

/**
 * Agents' credentials on SQLite: the registry of provisioned agents, their token hashes and
 * revocations. Other hub processes learn of a change from SQLite's data_version.
 */
export class SqliteCredentials {
  readonly #db: SqliteConnection;

  constructor(db: SqliteConnection) {
    this.#db = db;
  }

  /**
   * Stores (or replaces) an agent's credential; a replaced one stops working at once.
   * `mosquittoHash` is the same token in Mosquitto's password-file format, for an external broker.
   */
  put(agentId: string, tokenHash: string, mosquittoHash?: string): void {
    this.#db
      .statement(
        `INSERT INTO agent_credentials (agent_id, token_hash, created_at, revoked_at, mosquitto_hash) VALUES (?, ?, ?, NULL, ?)
       ON CONFLICT (agent_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at, revoked_at = NULL,
         mosquitto_hash = excluded.mosquitto_hash, verified_fingerprint = NULL`,
      )
      .run(agentId, tokenHash, Date.now(), mosquittoHash ?? null);
  }

  /** Unrevoked agents with their Mosquitto hash (null: provisioned before the hub stored one). */
  brokerCredentials(): Array<{ agentId: string; mosquittoHash: string | null }> {
    return this.#db
      .statement<[], { agent_id: string; mosquitto_hash: string | null }>(
        'SELECT agent_id, mosquitto_hash FROM agent_credentials WHERE revoked_at IS NULL ORDER BY agent_id',
      )
      .all()
      .map(toBrokerCredential);
  }

  /** Revokes an agent's credential; false if it had none. */
  revoke(agentId: string): boolean {
    return (
      this.#db
        .statement('UPDATE agent_credentials SET revoked_at = ?, verified_fingerprint = NULL WHERE agent_id = ? AND revoked_at IS NULL')
        .run(Date.now(), agentId).changes > 0
    );
  }

  get(agentId: string): Credential | undefined {
    const row = this.#db
      .statement<[string], CredentialRow>('SELECT token_hash, revoked_at, verified_fingerprint FROM agent_credentials WHERE agent_id = ?')
      .get(agentId);
    return row && toCredential(row);
  }

  rememberVerifiedToken(agentId: string, tokenHash: string, fingerprint: string): void {
    this.#db
      .statement('UPDATE agent_credentials SET verified_fingerprint = ? WHERE agent_id = ? AND token_hash = ? AND revoked_at IS NULL')
      .run(fingerprint, agentId, tokenHash);
  }

  list(): CredentialListing[] {
    return this.#db
      .statement<[], { agent_id: string; created_at: number; revoked_at: number | null }>(
        'SELECT agent_id, created_at, revoked_at FROM agent_credentials ORDER BY agent_id',
      )
      .all()
      .map(toCredentialListing);
  }
}
