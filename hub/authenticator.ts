import type { Logger } from 'pino';
import { sourceOf } from './address-source.js';
import { AuthThrottle, DEFAULT_AUTH_LIMITS, type AuthLimits } from './auth-throttle.js';
import { fingerprint, hashToken, newToken, verifyToken } from './credentials.js';
import type { HubStore } from './store/hub-store.js';

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
 * token is remembered by a SHA-256 fingerprint, with the stored hash it was checked against, so
 * that reconnects cost no scrypt: it counts only while that agent's credential is the same and
 * unrevoked (read at every login). A change to one agent's credential thus costs only that agent
 * a check; forgetting them all on any change would send a whole fleet's reconnects through scrypt.
 *
 * An unknown id costs the same scrypt as a known one (against a dummy hash), and a revoked id
 * is only said to be revoked to whoever holds its token: whether an id exists cannot be learnt
 * from the answer or its timing. scrypt work is bounded in total and per source (AuthThrottle).
 */
export class Authenticator {
  readonly #verified = new Map<string, { token: string; against: string }>();
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
    // A token verified since the credentials last changed is recognised without scrypt, so a
    // device that already logged in is not held up by others' failures at its address.
    const known = this.#verified.get(clientId);
    if (credential && !credential.revoked && known?.against === credential.tokenHash && known.token === fingerprint(token)) return 'ok';
    const source = address === undefined ? undefined : sourceOf(address);
    let matches = false;
    const good = await this.#throttle.run(source, clientId, async () => {
      matches = await verifyToken(token, credential?.tokenHash ?? (await this.#dummy()));
      return matches && credential !== undefined && !credential.revoked;
    });
    if (good === 'busy' || good === 'backoff') return good;
    const result: AuthResult = !credential ? 'unknown-agent' : !matches ? 'wrong-token' : credential.revoked ? 'revoked' : 'ok';
    if (result === 'ok') this.#verified.set(clientId, { token: fingerprint(token), against: credential!.tokenHash });
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
