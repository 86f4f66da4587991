import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI } from '../helpers/processes.js';

describe('outpost demo', () => {
  it('runs a hub and three agents, one on a flaky link, and converges', () => {
    const result = spawnSync(process.execPath, [CLI, 'demo', '--seconds', '5'], { encoding: 'utf8', timeout: 60_000 });
    expect(result.stdout).toMatch(/pi-flaky/);
    expect(result.stdout).toMatch(/converged: \d+ writes from 3 agents/);
    const drops = Number(/pi-flaky's link dropped (\d+) times/.exec(result.stdout)?.[1]);
    expect(drops).toBeGreaterThanOrEqual(1);
    expect(result.status).toBe(0);
  }, 90_000);
});
