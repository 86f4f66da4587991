import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Authenticator } from '../../hub/authenticator.js';
import { hashToken, newToken } from '../../hub/credentials.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { tempDir } from '../helpers/temp.js';

describe('the authenticator', () => {
  it("remembers a verified token until that agent's own credential changes, not anyone's", async () => {
    const store = new SqliteHubStore(tempDir('auth'));
    const auth = new Authenticator(store, pino({ level: 'silent' }));
    const [a, b] = [newToken(), newToken()];
    await store.putCredential('pi-a', await hashToken(a));
    await store.putCredential('pi-b', await hashToken(b));
    const login = (id: string, token: string) => auth.check(id, id, Buffer.from(token), '10.0.0.1');
    expect(await login('pi-a', a)).toBe('ok');
    // Another device's credential is replaced, and a wrong token from the same address sets it backing off.
    await store.putCredential('pi-b', await hashToken(newToken()));
    expect(await login('pi-b', b)).toBe('wrong-token');
    expect(await login('pi-b', b)).toBe('backoff');
    // pi-a's token was verified against its credential, which has not changed: no new check, no wait.
    expect(await login('pi-a', a)).toBe('ok');
    // Its own credential replaced, the token it remembered no longer counts: it is checked again
    // (pi-b's failures at the same address do not hold it up), and fails.
    await store.putCredential('pi-a', await hashToken(newToken()));
    expect(await login('pi-a', a)).toBe('wrong-token');
    await store.revokeCredential('pi-a');
    store.db.close();
  });

  it('recognises a verified token after a restart without a token check, until the credential is replaced or revoked', async () => {
    const dir = tempDir('auth-restart');
    const [a, b] = [newToken(), newToken()];
    let store = new SqliteHubStore(dir);
    await store.putCredential('pi-a', await hashToken(a));
    await store.putCredential('pi-b', await hashToken(b));
    const first = new Authenticator(store, pino({ level: 'silent' }));
    expect(await first.check('pi-a', 'pi-a', Buffer.from(a), '10.0.0.1')).toBe('ok');
    expect(await first.check('pi-b', 'pi-b', Buffer.from(b), '10.0.0.1')).toBe('ok');
    store.db.close();

    // The hub restarts: a new process, the same database.
    store = new SqliteHubStore(dir);
    const auth = new Authenticator(store, pino({ level: 'silent' }));
    const login = (id: string, token: string) => auth.check(id, id, Buffer.from(token), '10.0.0.1');
    // Three ids fail from the address, so every login from it that needs a check now waits.
    for (const id of ['pi-x', 'pi-y', 'pi-z']) expect(await login(id, newToken())).toBe('unknown-agent');
    expect(await login('pi-x', newToken())).toBe('backoff');
    // pi-a's token is recognised by its stored fingerprint: no check, so no wait.
    expect(await login('pi-a', a)).toBe('ok');
    expect(await login('pi-a', newToken())).toBe('backoff'); // another token for it is checked, and waits
    // Replaced or revoked, the fingerprint goes with the credential: the token needs a check again.
    await store.putCredential('pi-a', await hashToken(a));
    expect(await login('pi-a', a)).toBe('backoff');
    await store.revokeCredential('pi-b');
    expect(await login('pi-b', b)).toBe('backoff');
    expect((await store.credential('pi-b'))?.verifiedFingerprint).toBeNull();
    store.db.close();
  });
});
