import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Agent } from '../agent/agent.js';
import { Hub } from '../hub/hub.js';
import { table } from './agent-client.js';

export interface DemoOptions {
  seconds: number;
  keep: boolean;
}

/**
 * `outpost demo`: a hub and three agents on this machine, one on a link that drops every few
 * seconds, writing readings; a live table of writes, outbox depth, lag and convergence. When the
 * time is up the writes stop and the demo waits for every replica to match the hub.
 */
export async function runDemo(options: DemoOptions): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-demo-'));
  const silent = pino({ level: 'silent' });
  const hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: join(dir, 'hub'), dev: true, logger: silent });
  const names = ['pi-kitchen', 'pi-garage', 'pi-flaky'];
  const agents = names.map((id) =>
    new Agent({
      hubUrl: `mqtt://127.0.0.1:${hub.port}`,
      agentId: id,
      dataDir: join(dir, id),
      logger: silent,
      reconnect: { initialMs: 200, maxMs: 2000 },
    }).start(),
  );
  const written = new Map(names.map((id) => [id, 0]));
  const drops = new Map(names.map((id) => [id, 0]));
  for (const a of agents) a.on('disconnected', () => drops.set(a.id, (drops.get(a.id) ?? 0) + 1));
  const flaky = agents[2]!;
  const dropper = setInterval(() => flaky.disconnect(), 3000); // the flaky link
  let writing = true;
  const writers = agents.map(async (agent) => {
    let n = 0;
    while (writing) {
      await agent.put('readings', `${agent.id}-${n % 50}`, { celsius: 18 + Math.round(Math.random() * 80) / 10, n });
      await agent.put('status', agent.id, { seen: new Date().toISOString(), n });
      written.set(agent.id, (written.get(agent.id) ?? 0) + 2);
      n += 1;
      await new Promise((resolve) => setTimeout(resolve, 150 + Math.random() * 150));
    }
  });

  // Every collection's head at the hub, refreshed before each check.
  let heads: Record<string, number> = {};
  const converged = async (): Promise<boolean> => {
    heads = await hub.store.collectionHeads();
    return agents.every((a) => {
      const s = a.status();
      return (
        s.outboxDepth === 0 && Object.entries(heads).every(([c, head]) => Math.max(s.collections[c]?.appliedLsn ?? 0, s.watermark) >= head)
      );
    });
  };
  const render = async (phase: string): Promise<void> => {
    const head = hub.store.head;
    const rows = agents.map((a) => {
      const s = a.status();
      return [
        a.id,
        s.connected ? 'online' : 'OFFLINE',
        String(drops.get(a.id)),
        String(written.get(a.id)),
        String(s.outboxDepth),
        String(Math.max(0, head - s.appliedLsn)),
      ];
    });
    const lines = [
      `outpost demo — ${phase} — hub at LSN ${head}${(await converged()) ? ', all replicas converged' : ''}`,
      '',
      table([['AGENT', 'LINK', 'DROPS', 'WRITES', 'OUTBOX', 'LAG (changes)'], ...rows]),
      '',
    ];
    process.stdout.write(process.stdout.isTTY ? `\x1b[2J\x1b[H${lines.join('\n')}\n` : `${lines.join('\n')}\n`);
  };

  const started = Date.now();
  while (Date.now() - started < options.seconds * 1000) {
    await render(
      `writing, ${Math.ceil((options.seconds * 1000 - (Date.now() - started)) / 1000)} s left (pi-flaky drops its link every 3 s)`,
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  writing = false;
  clearInterval(dropper);
  await Promise.all(writers);
  const deadline = Date.now() + 30_000;
  while (!(await converged()) && Date.now() < deadline) {
    await render('writes stopped, waiting for every replica to catch up');
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const ok = await converged();
  await render(ok ? 'done' : 'did not converge in 30 s');
  const total = [...written.values()].reduce((a, b) => a + b, 0);
  process.stdout.write(
    ok
      ? `converged: ${total} writes from 3 agents; every replica has applied all of them, up to LSN ${hub.store.head} ` +
          `(pi-flaky's link dropped ${drops.get('pi-flaky')} times)\n`
      : 'NOT converged within 30 s after the writes stopped\n',
  );
  await Promise.all(agents.map((a) => a.close()));
  await hub.stop();
  if (!options.keep) rmSync(dir, { recursive: true, force: true });
  else process.stdout.write(`data kept in ${dir}\n`);
  return ok;
}
