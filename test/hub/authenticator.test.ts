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
});
