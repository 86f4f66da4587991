import { afterEach, describe, expect, it } from 'vitest';
import { parseHubConfig } from '../../hub/config.js';
import { HubCore } from '../../hub/core.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { downCodec, upCodec } from '../../shared/codec.js';
import type { DownMessage } from '../../shared/messages.js';
import { topics } from '../../shared/topics.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

const CONFIG = parseHubConfig({ collections: { config: { scope: { key: '{agent}/' } } } });
const SESSION_1 = '0000000000000001';
const SESSION_2 = '0000000000000002';

describe('which devices are online for their scope', () => {
  let core: HubCore;
  afterEach(async () => core?.stop());

  function start(): { received: DownMessage[]; refused: string[] } {
    const seen = { received: [] as DownMessage[], refused: [] as string[] };
    core = new HubCore({
      store: new SqliteHubStore(tempDir('presence')),
      config: CONFIG,
      dev: true,
      publish: (topic, payload) => {
        if (topic === topics.down('pi-1')) seen.received.push(downCodec.decode(payload));
      },
    });
    core.on('refused', (kind) => seen.refused.push(kind));
    core.start();
    return seen;
  }
  const say = (message: Parameters<typeof upCodec.encode>[0]): void => core.onUp('pi-1', upCodec.encode(message));
  const changeSets = (received: DownMessage[]): number => received.filter((m) => m[0] === 'changes').length;

  it('a device hears its buckets from its hello until its bye; a late bye of an older connection does not take it offline', async () => {
    const seen = start();
    await core.write({ c: 'config', k: 'pi-1/a', op: 'put', v: 1 });
    expect(changeSets(seen.received)).toBe(0); // not online: nothing sent

    say(['hello', { s: SESSION_1 }]);
    await waitFor('its scope', () => seen.received.some((m) => m[0] === 'scope'));
    await core.write({ c: 'config', k: 'pi-1/a', op: 'put', v: 2 });
    await waitFor('the change set', () => changeSets(seen.received) === 1);

    // It reconnects (hello of a new connection), then the broker delivers the old one's will.
    say(['hello', { s: SESSION_2 }]);
    await waitFor('its scope again', () => seen.received.filter((m) => m[0] === 'scope').length === 2);
    say(['bye', { s: SESSION_1 }]);
    await core.write({ c: 'config', k: 'pi-1/a', op: 'put', v: 3 });
    await waitFor('still online', () => changeSets(seen.received) === 2);

    say(['bye', { s: SESSION_2 }]);
    await core.write({ c: 'config', k: 'pi-1/a', op: 'put', v: 4 });
    // The commit is published synchronously after it resolves: nothing went to the device.
    expect(changeSets(seen.received)).toBe(2);
  });

  it('a hello whose connection ends before its turn comes does not put the device online', async () => {
    const seen = start();
    say(['hello', { s: SESSION_1 }]); // answered at once
    say(['hello', { s: SESSION_2 }]); // waits for the first to be answered
    say(['bye', { s: SESSION_1 }]);
    say(['bye', { s: SESSION_2 }]);
    await waitFor('the waiting hello dropped', () => seen.refused.includes('hello_superseded'));
    expect(core.scopes.directory.tracks('pi-1')).toBe(false);
    await core.write({ c: 'config', k: 'pi-1/a', op: 'put', v: 1 });
    expect(changeSets(seen.received)).toBe(0);
  });

  it('a flood of hellos is answered at most twice at once: each newer one replaces the one waiting', async () => {
    const seen = start();
    for (let i = 0; i < 50; i++) say(['hello', { s: i.toString(16).padStart(16, '0') }]);
    await waitFor('48 replaced', () => seen.refused.filter((k) => k === 'hello_superseded').length === 48);
    await waitFor('two scopes', () => seen.received.filter((m) => m[0] === 'scope').length === 2);
    expect(seen.received.filter((m) => m[0] === 'scope')).toHaveLength(2);
  });

  it('a document in more scope buckets than a change may name is refused, and delivery of its buckets goes on', async () => {
    // A key rule puts a document in one bucket; a list field is what multiplies them.
    const listed = new HubCore({
      store: new SqliteHubStore(tempDir('many-buckets')),
      config: parseHubConfig({ collections: { sites: { scope: { field: 'site', in: '{label.sites}' } } } }),
      dev: true,
      publish: () => undefined,
    });
    try {
      listed.start();
      const site = ['berlin', ...Array.from({ length: 1100 }, (_, i) => `s${i}`)];
      expect(await listed.write({ c: 'sites', k: 'wide', op: 'put', v: { site } })).toMatchObject({
        outcome: 'rejected',
        reason: 'too_many_buckets',
      });
      expect(await listed.write({ c: 'sites', k: 'narrow', op: 'put', v: { site: ['berlin'] } })).toMatchObject({ outcome: 'committed' });
    } finally {
      await listed.stop();
    }
  });
});
