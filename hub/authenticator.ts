import type { Logger } from 'pino';
import { fingerprint, verifyToken } from './credentials.js';
import type { HubStore } from './store/hub-store.js';

export type AuthResult = 'ok' | 'no-credentials' | 'unknown-agent' | 'revoked' | 'wrong-token' | 'id-mismatch';

/**
 * Checks an agent's MQTT credentials: the username must be the client id, the password the
 * token provisioned for it (`outpost hub agents add`), stored as an scrypt hash. A verified
 * token is remembered by a SHA-256 fingerprint so that reconnects cost no scrypt; any change to
 * the credentials forgets them all.
 */
export class Authenticator {
  readonly #verified = new Map<string, string>();

  constructor(
    private readonly store: HubStore,
    private readonly log: Logger,
  ) {}

  async check(clientId: string, username: string | undefined, password: Buffer | undefined): Promise<AuthResult> {
    if (username === undefined || password === undefined) return 'no-credentials';
    if (username !== clientId) return 'id-mismatch';
    const credential = await this.store.credential(clientId);
    if (!credential) return 'unknown-agent';
    if (credential.revoked) return 'revoked';
    const token = password.toString('utf8');
    if (this.#verified.get(clientId) === fingerprint(token)) return 'ok';
    const ok = await verifyToken(token, credential.tokenHash);
    if (!ok) return 'wrong-token';
    this.#verified.set(clientId, fingerprint(token));
    return 'ok';
  }

  /** Credentials changed (added, replaced or revoked): check every token afresh. */
  forget(): void {
    this.#verified.clear();
    this.log.debug('credentials changed; verified tokens forgotten');
  }

  /** Whether an agent may stay connected: it still has an unrevoked credential. */
  async stillValid(agentId: string): Promise<boolean> {
    const credential = await this.store.credential(agentId);
    return credential !== undefined && !credential.revoked;
  }
}
