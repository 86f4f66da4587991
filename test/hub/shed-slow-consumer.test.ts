import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { FaultProxy } from '../chaos/fault-proxy.js';
import { frozenSubscriber, pullEverything } from '../helpers/attackers.js';
import { HubUnderAttack, STOLEN_ID } from '../helpers/hub-under-attack.js';
import { tempDir } from '../helpers/temp.js';
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

  it('keeps an honest agent on a slow link connected through a burst of change sets many times maxQueuedBytes, and it converges', async () => {
    // A 1 MiB bound and a ~2 MB/s link: a 12 MB burst (a fleet flushing after an outage) is far
    // more than the link carries before the bound, even with the kernel's socket buffers.
    bench = await HubUnderAttack.start(['--max-queued-bytes', String(1 << 20)]);
    const proxy = await FaultProxy.start({ host: '127.0.0.1', port: bench.mqttPort });
    proxy.bandwidth = 2_000_000;
    const slow = new Agent({
      hubUrl: `mqtt://127.0.0.1:${proxy.port}`,
      agentId: STOLEN_ID,
      hubToken: bench.stolenToken,
      dataDir: join(tempDir('slow-agent'), STOLEN_ID),
      reconnect: { initialMs: 50, maxMs: 500 },
    }).start();
    try {
      const [writer, other] = bench.agents as [Agent, Agent];
      await writer.put('probes', 'slow-ready', {});
      await waitFor('the slow agent replicates', () => slow.get('probes', 'slow-ready'), 10_000);
      const count = 60;
      await Promise.all(
        Array.from({ length: count }, (_, i) => writer.put('burst', `doc-${i}`, { i, filler: randomBytes(150_000).toString('base64') })),
      );
      const converged = async (agent: Agent): Promise<boolean> => (await agent.list('burst')).length === count;
      await waitFor('the direct agent has the burst', () => converged(other), 30_000);
      // Alone this takes about 35 s; a loaded two-core machine running other suites beside it has taken over 60.
      await waitFor('the slow agent has the burst', () => converged(slow), 100_000);
      const digest = async (agent: Agent): Promise<string[]> => (await agent.list('burst')).map((d) => `${d.key}@${d.version}`).sort();
      expect(await digest(slow)).toEqual(await digest(other));
      expect(await bench.shed('slow_consumer'), 'honest agents disconnected as slow consumers').toBe(0);
      expect(await bench.refused('change_set_skipped'), 'change sets skipped for the slow agent').toBeGreaterThan(0);
      await bench.expectHealthy();
    } finally {
      await slow.close();
      await proxy.close();
    }
  }, 160_000);
});
