import type { Logger } from 'pino';
import { sourceOf } from './address-source.js';
import { AuthThrottle, DEFAULT_AUTH_LIMITS, type AuthLimits } from './auth-throttle.js';
import { fingerprint, hashToken, newToken, verifyToken } from './credentials.js';
import type { HubStore } from './store/hub-store.js';
import { constantTimeEqual } from '../shared/bearer.js';

export type AuthResult =
  | 'ok'
  | 'no-credentials'
  | 'unknown-agent'
  | 'revoked'
  | 'wrong-token'
  | 'id-mismatch'
  /** The client's source (address, or IPv6 /64) is backing off after failed logins; nothing was checked. */
  | 'backoff'
  /** Too many token checks are waiting, in all or from this source; nothing was checked. */
  | 'busy';

/**
 * Checks an agent's MQTT credentials: the username must be the client id, the password the
 * token provisioned for it (`outpost hub agents add`), stored as an scrypt hash. A verified
 * token is remembered in the store, as a SHA-256 fingerprint beside the hash it was checked
 * against, so that reconnects cost no scrypt, after a restart too: without that, a restarted
 * hub would put every device of the fleet through scrypt at once (10,000 devices: minutes of
 * both cores). It counts only while that agent's credential is the same and unrevoked (read at
 * every login); replacing or revoking the credential clears it, and costs only that agent a check.
 * The fingerprint is safe at rest because the token is 32 random bytes the hub made: a slow
 * hash protects guessable secrets, and nobody guesses 256 bits, fast hash or slow.
 *
 * An unknown id costs the same scrypt as a known one (against a dummy hash), and a revoked id
 * is only said to be revoked to whoever holds its token: whether an id exists cannot be learnt
 * from the answer or its timing. scrypt work is bounded in total and per source (AuthThrottle).
 */
export class Authenticator {
  readonly #throttle: AuthThrottle;
  /** The hash unknown ids are checked against: of a random token nobody holds. */
  #dummyHash: Promise<string> | undefined;

  constructor(
    private readonly store: HubStore,
    private readonly log: Logger,
    limits: AuthLimits = DEFAULT_AUTH_LIMITS,
  ) {
    this.#throttle = new AuthThrottle(limits);
  }

  /** `address`: where the login comes from, for the limits per source (unknown over HTTP broker auth). */
  async check(clientId: string, username: string | undefined, password: Buffer | undefined, address?: string): Promise<AuthResult> {
    if (username === undefined || password === undefined) return 'no-credentials';
    if (username !== clientId) return 'id-mismatch';
    const credential = await this.store.credential(clientId);
    const token = password.toString('utf8');
    // A token verified since the credential last changed is recognised without scrypt, so a
    // device that already logged in is not held up by others' failures at its address.
    const verified = credential?.verifiedFingerprint;
    if (credential && !credential.revoked && verified && constantTimeEqual(verified, fingerprint(token))) return 'ok';
    const source = address === undefined ? undefined : sourceOf(address);
    let matches = false;
    const good = await this.#throttle.run(source, clientId, async () => {
      matches = await verifyToken(token, credential?.tokenHash ?? (await this.#dummy()));
      return matches && credential !== undefined && !credential.revoked;
    });
    if (good === 'busy' || good === 'backoff') return good;
    const result: AuthResult = !credential ? 'unknown-agent' : !matches ? 'wrong-token' : credential.revoked ? 'revoked' : 'ok';
    if (result === 'ok') {
      // Losing it costs one scrypt at the next login, not the login itself.
      await this.store.rememberVerifiedToken(clientId, credential!.tokenHash, fingerprint(token)).catch((error: unknown) => {
        this.log.warn({ err: error, agentId: clientId }, 'could not remember a verified token; its next login costs a token check again');
      });
    }
    return result;
  }

  #dummy(): Promise<string> {
    this.#dummyHash ??= hashToken(newToken());
    return this.#dummyHash;
  }

  /** Whether an agent may stay connected: it still has an unrevoked credential. */
  async stillValid(agentId: string): Promise<boolean> {
    const credential = await this.store.credential(agentId);
    return credential !== undefined && !credential.revoked;
  }
}
