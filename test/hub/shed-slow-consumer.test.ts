import { afterEach, describe, expect, it } from 'vitest';
import { frozenSubscriber, pullEverything } from '../helpers/attackers.js';
import { HubUnderAttack } from '../helpers/hub-under-attack.js';
import { sleep, waitFor } from '../helpers/wait.js';

describe('a hub under attack: a subscriber that stops reading', () => {
  let bench: HubUnderAttack | undefined;
  afterEach(async () => {
    await bench?.stop();
    bench = undefined;
  });

  it('is dropped once over maxQueuedBytes, and never delays delivery to the legit agents', async () => {
    bench = await HubUnderAttack.start();
    await bench.startLoad(50, 8 * 1024);
    await waitFor('a log worth a full page', () => bench!.loadWrites >= 80, 10_000);
    const attacker = await frozenSubscriber(bench.mqttPort, bench.stolenToken);
    let closed = false;
    attacker.once('close', () => (closed = true));

    // It asks for pages it never reads, ~5 MB/s, while the legit agents go on writing and
    // replicating: every legit write must replicate within 5 s throughout. Without the bound,
    // aedes waits for this client's `drain` before delivering anything more, to anyone, until
    // its 20 s drain timeout.
    const probes: number[] = [];
    const attack = (async () => {
      for (let id = 1; !closed && id < 300; id++) {
        attacker.write(pullEverything(id));
        await sleep(100);
      }
    })();
    const deadline = Date.now() + 15_000;
    while (!closed && Date.now() < deadline) probes.push(await bench.legitWriteReplicates(5_000));
    await attack;
    expect(closed, 'the frozen subscriber was disconnected').toBe(true);
    expect(await bench.shed('slow_consumer')).toBe(1);
    await bench.hub.waitForLog('"shed":"slow_consumer"', 2_000);
    // The legit agents keep replicating after it is gone, and kept doing so meanwhile.
    for (let i = 0; i < 3; i++) probes.push(await bench.legitWriteReplicates(5_000));
    expect(Math.max(...probes), 'slowest legit replication during the attack (ms)').toBeLessThan(5_000);
    await bench.expectHealthy();
    attacker.destroy();
  }, 60_000);
});
