import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import type { AppliedChange } from '../../agent/types.js';
import { parseHubConfig } from '../../hub/config.js';
import { hashToken, newToken } from '../../hub/credentials.js';
import type { BrokerClientHub } from '../../hub/external-broker.js';
import type { Hub } from '../../hub/hub.js';
import { bucketIdOf } from '../../shared/buckets.js';
import { broadcastCodec, downCodec, upCodec } from '../../shared/codec.js';
import { ErrorCode } from '../../shared/errors.js';
import { topics } from '../../shared/topics.js';
import { FLEET_SETUPS, TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';
import type { Change } from '../../shared/messages.js';

const CONFIG = parseHubConfig({
  collections: {
    config: { scope: { key: '{agent}/' } },
    sites: { scope: { field: 'site', equals: '{label.site}' } },
    notes: {},
  },
  access: { default: { read: ['*'], write: ['*'] } },
});

/** Every change an agent applied, and every document it evicted, as they happened. */
function watch(agent: Agent): { changes: AppliedChange[]; evicted: string[] } {
  const seen = { changes: [] as AppliedChange[], evicted: [] as string[] };
  agent.on('change', (changes) => seen.changes.push(...changes));
  agent.on('evicted', (docs) => seen.evicted.push(...docs.map((d) => `${d.collection}/${d.key}`)));
  return seen;
}

const holds = async (agent: Agent, c: string, k: string): Promise<boolean> => (await agent.get(c, k)) !== undefined;
const valueOf = async (agent: Agent, c: string, k: string): Promise<Record<string, unknown> | undefined> =>
  (await agent.get(c, k))?.value as Record<string, unknown> | undefined;

describe.each(FLEET_SETUPS)('scoped collections, end to end: broker %s, store %s', (broker, store) => {
  let fleet: TestFleet;
  afterEach(async () => fleet?.close());

  async function start(): Promise<Hub | BrokerClientHub> {
    fleet = new TestFleet({ config: CONFIG }, broker, store);
    const hub = await fleet.startHub();
    await hub.registry.setLabels('pi-1', { site: 'berlin' }, []);
    await hub.registry.setLabels('pi-2', { site: 'paris' }, []);
    await waitFor('labels loaded', () => hub.labelsOf('pi-2').site === 'paris');
    return hub;
  }

  it('each device receives its own scope only: what was there before it came, live changes, its own writes, and after a reconnect', async () => {
    const hub = await start();
    for (const [c, k, v] of [
      ['config', 'pi-1/limits', { max: 1 }],
      ['config', 'pi-2/limits', { max: 2 }],
      ['sites', 'berlin-1', { site: 'berlin' }],
      ['sites', 'paris-1', { site: 'paris' }],
      ['notes', 'n-1', { text: 'for everyone' }],
    ] as const)
      await hub.core.write({ c, k, op: 'put', v });
    const pi1 = fleet.agent('pi-1');
    const pi2 = fleet.agent('pi-2');
    const seen1 = watch(pi1);
    const seen2 = watch(pi2);
    await waitFor(
      'pi-1 holds its scope',
      async () =>
        (await holds(pi1, 'config', 'pi-1/limits')) && (await holds(pi1, 'sites', 'berlin-1')) && (await holds(pi1, 'notes', 'n-1')),
    );
    await waitFor(
      'pi-2 holds its scope',
      async () =>
        (await holds(pi2, 'config', 'pi-2/limits')) && (await holds(pi2, 'sites', 'paris-1')) && (await holds(pi2, 'notes', 'n-1')),
    );

    // Live: a change reaches the device whose scope it is in, and only it.
    await hub.core.write({ c: 'config', k: 'pi-1/limits', op: 'put', v: { max: 10 } });
    await hub.core.write({ c: 'sites', k: 'paris-2', op: 'put', v: { site: 'paris' } });
    await waitFor('pi-1 has its new config', async () => (await valueOf(pi1, 'config', 'pi-1/limits'))?.max === 10);
    await waitFor('pi-2 has the new paris site', async () => await holds(pi2, 'sites', 'paris-2'));
    // A device's own write in its scope is committed and stays its own.
    const own = await pi1.put('sites', 'berlin-2', { site: 'berlin', by: 'pi-1' }, { durability: 'hub' });
    expect(own.lsn).toBeGreaterThan(0);

    // Offline, then back: it catches up on its buckets from where it stopped.
    const scopeOfPi2 = async () => (await hub.fleet()).find((a) => a.agentId === 'pi-2')?.scope;
    // Its status reports come on their own schedule: the last one before it closes must show what it applied.
    await waitFor('pi-2 reports what it applied', async () => (await scopeOfPi2())?.lagChanges === 0);
    await pi2.close();
    await hub.core.write({ c: 'config', k: 'pi-2/limits', op: 'put', v: { max: 20 } });
    await hub.core.write({ c: 'sites', k: 'paris-3', op: 'put', v: { site: 'paris' } });
    await hub.core.write({ c: 'sites', k: 'berlin-3', op: 'put', v: { site: 'berlin' } });
    // The fleet view counts its scope, and what of it the device had not applied at its last
    // report: these two (not berlin-3).
    expect(await scopeOfPi2()).toMatchObject({ buckets: 2, documents: 4 });
    expect((await scopeOfPi2())?.lagChanges).toBe(2);
    const pi2again = fleet.agent('pi-2');
    const seen2again = watch(pi2again);
    await waitFor(
      'pi-2 caught up',
      async () => (await valueOf(pi2again, 'config', 'pi-2/limits'))?.max === 20 && (await holds(pi2again, 'sites', 'paris-3')),
    );
    await waitFor('pi-2 reports it caught up', async () => (await scopeOfPi2())?.lagChanges === 0);
    // From where it stopped: only what it missed.
    expect(seen2again.changes.map((c) => `${c.c}/${c.k}`).sort()).toEqual(['config/pi-2/limits', 'sites/paris-3']);
    await waitFor('pi-1 has berlin-3', async () => await holds(pi1, 'sites', 'berlin-3'));

    const keys = (seen: { changes: AppliedChange[] }): Set<string> => new Set(seen.changes.map((c) => `${c.c}/${c.k}`));
    expect([...keys(seen1)].sort()).toEqual(['config/pi-1/limits', 'notes/n-1', 'sites/berlin-1', 'sites/berlin-2', 'sites/berlin-3']);
    expect([...keys(seen2)].sort()).toEqual(['config/pi-2/limits', 'notes/n-1', 'sites/paris-1', 'sites/paris-2']);
    expect(await holds(pi1, 'sites', 'paris-1')).toBe(false);
    expect(await holds(pi2again, 'sites', 'berlin-1')).toBe(false);
    expect(await holds(pi1, 'config', 'pi-2/limits')).toBe(false);
  });

  it('moves: a document whose field changes leaves one device and reaches another; a relabelled device evicts what it left and receives only what it lacks', async () => {
    const hub = await start();
    await hub.core.write({ c: 'sites', k: 'berlin-1', op: 'put', v: { site: 'berlin', n: 1 } });
    await hub.core.write({ c: 'sites', k: 'berlin-2', op: 'put', v: { site: 'berlin', n: 2 } });
    await hub.core.write({ c: 'sites', k: 'paris-1', op: 'put', v: { site: 'paris', n: 1 } });
    await hub.core.write({ c: 'sites', k: 'both-1', op: 'put', v: { site: ['berlin', 'paris'] } });
    const pi1 = fleet.agent('pi-1');
    const pi2 = fleet.agent('pi-2');
    const seen1 = watch(pi1);
    const seen2 = watch(pi2);
    await waitFor('pi-1 holds berlin', async () => (await holds(pi1, 'sites', 'berlin-1')) && (await holds(pi1, 'sites', 'berlin-2')));
    await waitFor('pi-2 holds paris', async () => await holds(pi2, 'sites', 'paris-1'));

    // A field change moves berlin-1 to paris.
    await hub.core.write({ c: 'sites', k: 'berlin-1', op: 'put', v: { site: 'paris', n: 1 } });
    await waitFor('pi-2 receives the moved document', async () => (await valueOf(pi2, 'sites', 'berlin-1'))?.site === 'paris');
    await waitFor('pi-1 evicts it', () => seen1.evicted.includes('sites/berlin-1'));
    expect(await holds(pi1, 'sites', 'berlin-1')).toBe(false);
    // Eviction is not deletion: the hub still has it.
    expect(await hub.store.document('sites', 'berlin-1')).toMatchObject({ deleted: false });
    // pi-1 never saw the moved version's value.
    expect(seen1.changes.filter((c) => c.k === 'berlin-1').every((c) => (c.v as { site: string }).site === 'berlin')).toBe(true);

    // pi-1 is relabelled to paris: it evicts berlin-2 and receives paris-1 and berlin-1 (now paris).
    const before = seen1.changes.length;
    const sent: string[] = []; // what the hub sends pi-1 in answer to its pulls from now on
    hub.core.on('pull', (agentId, _pull, answer) => {
      if (agentId === 'pi-1') sent.push(...(answer[0] === 'page' ? answer[1].changes : answer[1].docs).map((c) => `${c.k}:${c.op}`));
    });
    await hub.registry.setLabels('pi-1', { site: 'paris' }, []);
    await waitFor('pi-1 holds paris', async () => (await holds(pi1, 'sites', 'paris-1')) && (await holds(pi1, 'sites', 'berlin-1')));
    await waitFor('pi-1 evicted berlin-2', async () => !(await holds(pi1, 'sites', 'berlin-2')));
    expect(seen1.evicted).toContain('sites/berlin-2');
    expect(
      seen1.changes
        .slice(before)
        .map((c) => c.k)
        .sort(),
    ).toEqual(['berlin-1', 'paris-1']);
    // Only what it lacked whole: both-1, which it holds through berlin and paris alike, only as a tag (its buckets).
    expect(sent.sort()).toEqual(['berlin-1:put', 'both-1:tag', 'paris-1:put']);
    expect(await holds(pi1, 'sites', 'both-1')).toBe(true);
    expect(seen1.evicted).not.toContain('sites/both-1');
    expect(seen2.evicted).toEqual([]);

    // Back to berlin: berlin-2 comes back, unchanged, from its stub.
    await hub.registry.setLabels('pi-1', { site: 'berlin' }, []);
    await waitFor(
      'pi-1 holds berlin-2 again',
      async () => (await holds(pi1, 'sites', 'berlin-2')) && !(await holds(pi1, 'sites', 'paris-1')),
    );
    expect(await valueOf(pi1, 'sites', 'berlin-2')).toEqual({ site: 'berlin', n: 2 });
  });

  it('a write that asks for replicas counts the devices whose scope holds it, and only those', async () => {
    const hub = await start();
    await hub.registry.setLabels('pi-3', { site: 'berlin' }, []);
    await waitFor('labels loaded', () => hub.labelsOf('pi-3').site === 'berlin');
    const pi1 = fleet.agent('pi-1');
    fleet.agent('pi-2'); // paris: never holds a berlin document
    const pi3 = fleet.agent('pi-3');
    await waitFor('all online', () => pi1.status().connected && pi3.status().connected);
    // pi-3 holds berlin: one replica.
    const one = await pi1.put('sites', 'berlin-r1', { site: 'berlin' }, { durability: { replicas: 1 }, timeoutMs: 10_000 });
    expect(one.lsn).toBeGreaterThan(0);
    // Two replicas: pi-2 applies everything of its own scope, yet does not hold this document.
    await expect(
      pi1.put('sites', 'berlin-r2', { site: 'berlin' }, { durability: { replicas: 2 }, timeoutMs: 1_500 }),
    ).rejects.toMatchObject({
      code: 'OUTPOST_DURABILITY_TIMEOUT',
    });
  });

  it('a restart with new scope rules moves documents: a device gets what entered and evicts what left, and is not sent again what it holds', async () => {
    const bySite = parseHubConfig({ collections: { sites: { scope: { field: 'site', equals: '{label.site}' } } } });
    const byRegion = parseHubConfig({ collections: { sites: { scope: { field: 'region', equals: '{label.region}' } } } });
    fleet = new TestFleet({ config: bySite }, broker, store);
    let hub = await fleet.startHub();
    await hub.registry.setLabels('pi-1', { site: 'berlin', region: 'eu' }, []);
    await waitFor('labels loaded', () => hub.labelsOf('pi-1').region === 'eu');
    for (const [k, site, region] of [
      ['berlin-1', 'berlin', 'eu'],
      ['berlin-2', 'berlin', 'us'], // an odd one: berlin, yet filed under another region
      ['paris-1', 'paris', 'eu'],
      ['ny-1', 'ny', 'us'],
    ] as const)
      await hub.core.write({ c: 'sites', k, op: 'put', v: { site, region } });
    const pi1 = fleet.agent('pi-1');
    const seen = watch(pi1);
    await waitFor('pi-1 holds berlin', async () => (await holds(pi1, 'sites', 'berlin-1')) && (await holds(pi1, 'sites', 'berlin-2')));

    await fleet.stopHub();
    fleet.hubOptions.config = byRegion;
    hub = await fleet.startHub();
    const sent: Change[] = [];
    hub.core.on('pull', (agentId, _pull, answer) => {
      if (agentId === 'pi-1') sent.push(...(answer[0] === 'page' ? answer[1].changes : answer[1].docs));
    });
    await waitFor('pi-1 holds eu', async () => (await holds(pi1, 'sites', 'paris-1')) && !(await holds(pi1, 'sites', 'berlin-2')));
    expect(await holds(pi1, 'sites', 'berlin-1')).toBe(true);
    expect(await holds(pi1, 'sites', 'ny-1')).toBe(false);
    expect(seen.evicted).toEqual(['sites/berlin-2']);
    // paris-1 came whole; berlin-1, which it held, only as a tag with its new buckets.
    expect(sent.filter((c) => c.op !== 'tag').map((c) => c.k)).toEqual(['paris-1']);
    expect(sent.filter((c) => c.op === 'tag').map((c) => c.k)).toEqual(['berlin-1']);
    // And it stays held through the new rules: a change to it arrives.
    await hub.core.write({ c: 'sites', k: 'berlin-1', op: 'put', v: { site: 'berlin', region: 'eu', n: 2 } });
    await waitFor('pi-1 has the change', async () => (await valueOf(pi1, 'sites', 'berlin-1'))?.n === 2);
  });

  it('a collection scoped for the first time: a device that held it whole evicts what left its scope and is sent only tags for what it keeps', async () => {
    fleet = new TestFleet({ config: parseHubConfig({ collections: { sites: {} } }) }, broker, store);
    let hub = await fleet.startHub();
    await hub.registry.setLabels('pi-1', { site: 'berlin' }, []);
    for (const [k, site] of [
      ['berlin-1', 'berlin'],
      ['berlin-2', 'berlin'],
      ['paris-1', 'paris'],
    ] as const)
      await hub.core.write({ c: 'sites', k, op: 'put', v: { site } });
    const pi1 = fleet.agent('pi-1');
    const seen = watch(pi1);
    await waitFor(
      'pi-1 holds the whole collection',
      async () => (await holds(pi1, 'sites', 'paris-1')) && (await holds(pi1, 'sites', 'berlin-2')),
    );

    await fleet.stopHub();
    fleet.hubOptions.config = parseHubConfig({ collections: { sites: { scope: { field: 'site', equals: '{label.site}' } } } });
    hub = await fleet.startHub();
    const sent: Change[] = [];
    hub.core.on('pull', (agentId, _pull, answer) => {
      if (agentId === 'pi-1') sent.push(...(answer[0] === 'page' ? answer[1].changes : answer[1].docs));
    });
    await waitFor('pi-1 evicted paris', async () => !(await holds(pi1, 'sites', 'paris-1')));
    expect(seen.evicted).toEqual(['sites/paris-1']);
    expect(await holds(pi1, 'sites', 'berlin-1')).toBe(true);
    expect(await holds(pi1, 'sites', 'berlin-2')).toBe(true);
    // What it held and keeps came as tags (its new buckets), nothing whole.
    expect(sent.filter((c) => c.op !== 'tag')).toEqual([]);
    expect(sent.map((c) => c.k).sort()).toEqual(['berlin-1', 'berlin-2']);
    await hub.core.write({ c: 'sites', k: 'berlin-1', op: 'put', v: { site: 'berlin', n: 2 } });
    await waitFor('pi-1 has the change', async () => (await valueOf(pi1, 'sites', 'berlin-1'))?.n === 2);
  });

  it("a device's own credentials subscribing to wildcards and other devices' topics receive nothing of theirs", async () => {
    fleet = new TestFleet({ config: CONFIG, dev: false }, broker, store);
    const hub = await fleet.startHub();
    const tokens = new Map<string, string>();
    for (const id of ['pi-1', 'pi-2']) {
      const token = newToken();
      tokens.set(id, token);
      // On Mosquitto as an operator does (the broker's password file is written again).
      if (broker === 'mosquitto') await fleet.provision(id, token);
      else await hub.registry.putCredential(id, await hashToken(token));
    }
    await hub.registry.setLabels('pi-1', { site: 'berlin' }, []);
    await hub.registry.setLabels('pi-2', { site: 'paris' }, []);
    await waitFor('labels loaded', () => hub.labelsOf('pi-2').site === 'paris');
    const pi2 = fleet.agent('pi-2', { hubToken: tokens.get('pi-2')! });
    const spy = await mqtt.connectAsync(`mqtt://127.0.0.1:${fleet.port}`, {
      clientId: 'pi-1',
      username: 'pi-1',
      password: tokens.get('pi-1')!,
      reconnectPeriod: 0,
    });
    const received: Change[] = [];
    const errors: string[] = [];
    const answered: number[] = [];
    spy.on('message', (topic, payload) => {
      const message = topic.endsWith('/down') ? downCodec.decode(payload) : broadcastCodec.decode(payload);
      if (message[0] === 'error') errors.push(message[1].code);
      if (message[0] === 'page' || message[0] === 'snapshot') answered.push(message[1].id);
      if (message[0] === 'changes') received.push(...message[1].changes);
      if (message[0] === 'page') received.push(...message[1].changes);
      if (message[0] === 'snapshot') received.push(...message[1].docs);
    });
    for (const filter of ['#', 'outpost/#', `${topics.root}/#`, topics.down('pi-2'), `${topics.root}/a/+/down`, topics.allCollections]) {
      await spy.subscribeAsync(filter, { qos: 1 }).catch(() => undefined);
    }
    await spy.subscribeAsync(topics.down('pi-1'), { qos: 1 });
    // A document of berlin's moves to paris before pi-1 ever joined berlin: its berlin version stays in berlin's log.
    await hub.core.write({ c: 'notes', k: 'n-0', op: 'put', v: { text: 'first' } }); // so that it is above LSN 1
    await hub.core.write({ c: 'sites', k: 'moved-1', op: 'put', v: { site: 'berlin', pin: 1 } });
    await hub.core.write({ c: 'sites', k: 'moved-1', op: 'put', v: { site: 'paris', pin: 2 } });
    // As a device does once it listens: the hub then sends it its own buckets.
    await spy.publishAsync(topics.up('pi-1'), upCodec.encode(['hello', { s: '0123456789abcdef' }]), { qos: 1 });
    await hub.core.write({ c: 'sites', k: 'paris-1', op: 'put', v: { site: 'paris' } });
    await hub.core.write({ c: 'config', k: 'pi-2/secret', op: 'put', v: { pin: 1234 } });
    await hub.core.write({ c: 'sites', k: 'berlin-1', op: 'put', v: { site: 'berlin' } });
    await waitFor(
      'pi-2 holds its documents',
      async () => (await holds(pi2, 'sites', 'paris-1')) && (await holds(pi2, 'config', 'pi-2/secret')),
    );
    // The spy, as pi-1, does get pi-1's own: proof that it listens.
    await waitFor('the spy hears its own bucket', () => received.some((c) => c.k === 'berlin-1'));
    // It asks for pi-2's bucket by its id: refused.
    const paris = bucketIdOf('sites|f|site|paris');
    await spy.publishAsync(topics.up('pi-1'), upCodec.encode(['pull', { id: 7, from: 0, b: paris }]), { qos: 1 });
    await waitFor('the pull is refused', () => errors.includes(ErrorCode.OUT_OF_SCOPE));
    // It asks for its own bucket's log from before it joined: it gets berlin as it is now, not its history.
    await spy.publishAsync(topics.up('pi-1'), upCodec.encode(['pull', { id: 8, from: 1, b: bucketIdOf('sites|f|site|berlin') }]), {
      qos: 1,
    });
    await waitFor('the pull of its own bucket is answered', () => answered.includes(8));
    expect(received.filter((c) => c.k === 'moved-1' && c.op !== 'out')).toEqual([]);
    expect(received.filter((c) => c.k === 'paris-1' || c.k.startsWith('pi-2/'))).toEqual([]);
    await spy.endAsync(true);
  });
});
