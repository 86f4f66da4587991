import { describe, expect, it } from 'vitest';
import { PendingLogins } from '../../hub/pending-logins.js';

describe('connections waiting to log in', () => {
  /** Enters a connection from `address`; returns its state, to see whether it was refused or closed later. */
  const connect = (pending: PendingLogins, address: string) => {
    const state = { address, closed: false, release: undefined as (() => void) | undefined };
    state.release = pending.enter(address, () => (state.closed = true));
    if (!state.release) state.closed = true;
    return state;
  };

  it('holds each source to its limit, and makes room for a new source by closing the oldest of the largest', () => {
    const pending = new PendingLogins({ total: 6, perSource: 4 });
    const a = [1, 2, 3, 4, 5].map(() => connect(pending, '10.0.0.1'));
    expect(a.map((c) => c.closed)).toEqual([false, false, false, false, true]); // its own limit
    const b = [1, 2].map(() => connect(pending, '10.0.0.2'));
    expect(pending.pending).toBe(6);
    // Full: a third source takes the place of the oldest connection of the source holding the most.
    const c = connect(pending, '10.0.0.3');
    expect([c.closed, a[0]!.closed, pending.pending]).toEqual([false, true, 6]);
    const c2 = connect(pending, '10.0.0.3');
    expect([c2.closed, a[1]!.closed]).toEqual([false, true]); // a: 2, b: 2, c: 2
    // Now every source holds as many as the newcomer's would: the newcomer is refused.
    expect(connect(pending, '10.0.0.3').closed).toBe(true);
    expect(connect(pending, '10.0.0.4').closed).toBe(false); // a lone new source still gets a place
    expect(b.every((x) => !x.closed)).toBe(true);
    // A release (logged in, or closed) frees its place; twice is harmless.
    c.release!();
    c.release!();
    expect(pending.pending).toBe(5);
    pending.closeAll();
    expect(pending.pending).toBe(0);
    expect([...a.slice(2, 4), ...b, c2].every((x) => x.closed)).toBe(true);
  });
});
