import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

describe('leadership epochs, as an agent sees them', () => {
  let fleet: TestFleet;
  afterEach(async () => fleet.close());

  it('ignores a hub process with a lower epoch than one it has heard, and follows a higher one', async () => {
    fleet = new TestFleet({ epoch: 5 });
    await fleet.startHub();
    // What the agent ignores it says in its log, which is how the test knows it has heard it.
    const ignored: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void ignored.push(line) });
    const agent = fleet.agent('pi-a', { logger });
    const ignoredOf = (type: string): number =>
      ignored.filter((line) => line.includes('deposed hub process') && line.includes(`"type":"${type}"`)).length;
    await agent.put('notes', 'n1', 'under epoch 5', { durability: 'hub', timeoutMs: 5_000 });

    // A deposed process (epoch 3) comes back on the same address: its acks and changes are not believed.
    await fleet.stopHub();
    fleet.hubOptions = { ...fleet.hubOptions, epoch: 3 };
    const deposed = await fleet.startHub();
    await waitFor('reconnected', () => agent.status().connected);
    await agent.put('notes', 'n2', 'sent while a deposed hub answers');
    await waitFor('the deposed hub committed n2', () => deposed.store.document('notes', 'n2'));
    await deposed.core.write({ c: 'notes', k: 'from-deposed', op: 'put', v: 1 });
    // Its ack for n2 and its change sets of n2 and from-deposed reached the agent and were ignored.
    await waitFor('the agent ignored the ack and both change sets', () => ignoredOf('ack') >= 1 && ignoredOf('changes') >= 2);
    expect(agent.status().outboxDepth, 'its ack was ignored').toBe(1);
    expect(await agent.get('notes', 'from-deposed'), 'its change set was ignored').toBeUndefined();

    // The rightful leader (epoch 6): the agent resends and catches up.
    await fleet.stopHub();
    fleet.hubOptions = { ...fleet.hubOptions, epoch: 6 };
    await fleet.startHub();
    await waitFor('outbox acknowledged', () => agent.status().outboxDepth === 0, 15_000);
    await waitFor('caught up', () => agent.get('notes', 'from-deposed'), 15_000);
  });
});
