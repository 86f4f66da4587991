/**
 * Propagation latency: agent A writes at a fixed rate, agent B (which replicates that collection)
 * applies; each write is timed from A's put() call to B's `change` event carrying it, on this
 * process's one clock. Floor, measured in the same run: a bare aedes broker and two MQTT.js
 * clients, one publishing the same JSON value at the same rate (QoS 1, as the agents use), the
 * other timing its arrival. Figures: p50, p99 and max, each against the floor's same percentile.
 *
 * Where things run: the hub is its own process (the CLI with --dev), and so is the floor's
 * broker, so that the hub's group commits and the broker's routing never wait behind the
 * agents' work — as on a real deployment, where they are on other machines. A and B stay in this
 * process so that one clock times both ends; their SQLite transactions share its event loop,
 * which the figure then includes (a device running both would pay the same). A replicates
 * nothing (it is a sensor), so B's applying is the only replica work here. The first tenth of
 * the writes warm up connections and JIT and are not counted.
 */
import { spawn } from 'node:child_process';
import mqtt from 'mqtt';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Agent } from '../agent/agent.js';
import { killOnExit } from './children.js';
import { startHubProcess } from './hub-process.js';
import { sleep, spread, until, type Spread } from './stats.js';
import { tempDir } from './temp.js';

export interface PropagationResult {
  rate: number;
  writes: number;
  outpost: Spread;
  floor: Spread;
}

const reading = (i: number): { celsius: number; at: number; sensor: string; i: number } => ({
  celsius: 20 + (i % 50) / 10,
  at: 1_764_000_000_000 + i,
  sensor: 'pi-a',
  i,
});

/**
 * Calls `send(i)` for i = 0 … total-1 at `rate` per second, open loop: a send is never held back
 * by an earlier one still travelling. Timers tick about once a millisecond, so at 1,000/s a
 * tick sends the one or two writes that came due.
 */
async function paced(rate: number, total: number, send: (i: number) => void): Promise<void> {
  const started = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
    while (sent < due) send(sent++);
    await sleep(1);
  }
}

/** Sends `total` paced messages and waits for every one; latencies of all but the warm-up. */
async function timeAll(rate: number, total: number, send: (i: number) => void, arrived: () => number, what: string): Promise<Float64Array> {
  const sentAt = new Float64Array(total);
  await paced(rate, total, (i) => {
    sentAt[i] = performance.now();
    send(i);
  });
  await until(`${what}: all ${total} writes to arrive`, () => arrived() === total, 30_000);
  return sentAt;
}

async function outpost(rate: number, total: number): Promise<Spread> {
  const dir = tempDir('bench-propagation');
  const hub = await startHubProcess(join(dir, 'hub'));
  const common = { hubUrl: hub.url, reconnect: { initialMs: 20, maxMs: 200 } };
  const a = new Agent({ ...common, agentId: 'prop-a', dataDir: join(dir, 'a'), collections: ['none'] }).start();
  const b = new Agent({ ...common, agentId: 'prop-b', dataDir: join(dir, 'b'), collections: ['readings'] }).start();
  await until('both agents to connect', () => a.status().connected && b.status().connected, 15_000);
  const receivedAt = new Float64Array(total);
  let arrived = 0;
  b.on('change', (changes) => {
    const now = performance.now();
    for (const ch of changes) {
      if (ch.c !== 'readings') continue;
      const i = Number(ch.k.slice(2));
      if (receivedAt[i] === 0) arrived += 1;
      receivedAt[i] = now;
    }
  });
  let failed: unknown;
  const sentAt = await timeAll(
    rate,
    total,
    (i) => {
      a.put('readings', `r-${i}`, reading(i)).catch((error: unknown) => (failed ??= error));
    },
    () => arrived,
    'outpost',
  );
  if (failed) throw failed as Error;
  await Promise.all([a.close(), b.close()]);
  await hub.stop();
  return latencies(sentAt, receivedAt);
}

async function floor(rate: number, total: number): Promise<Spread> {
  const child = killOnExit(
    spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./broker-process.ts', import.meta.url))], {
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the floor broker exited with ${code}`)));
    createInterface({ input: child.stdout }).once('line', (text) => resolve(Number(text.split(' ')[1])));
  });
  const options = { protocolVersion: 4 as const, keepalive: 30, clean: true, reconnectPeriod: 0 }; // as the agent's link
  const [pub, sub] = await Promise.all([
    mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { ...options, clientId: 'floor-pub' }),
    mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { ...options, clientId: 'floor-sub' }),
  ]);
  await sub.subscribeAsync('floor/readings', { qos: 1 });
  const receivedAt = new Float64Array(total);
  let arrived = 0;
  sub.on('message', (_topic, payload) => {
    const { i } = JSON.parse(payload.toString()) as { i: number };
    if (receivedAt[i] === 0) arrived += 1;
    receivedAt[i] = performance.now();
  });
  const sentAt = await timeAll(
    rate,
    total,
    (i) => {
      pub.publish('floor/readings', JSON.stringify(reading(i)), { qos: 1 });
    },
    () => arrived,
    'floor',
  );
  await Promise.all([pub.endAsync(), sub.endAsync()]);
  child.kill('SIGTERM');
  return latencies(sentAt, receivedAt);
}

function latencies(sentAt: Float64Array, receivedAt: Float64Array): Spread {
  const warm = Math.floor(sentAt.length / 10);
  return spread(receivedAt.subarray(warm).map((t, j) => t - sentAt[warm + j]!));
}

export async function benchPropagation(quick: boolean): Promise<PropagationResult> {
  const rate = quick ? 200 : 1_000;
  const writes = rate * (quick ? 2 : 10);
  return { rate, writes, floor: await floor(rate, writes), outpost: await outpost(rate, writes) };
}
