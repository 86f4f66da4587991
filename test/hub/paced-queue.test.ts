import { describe, expect, it, vi } from 'vitest';
import { InboundBudget, InboundBudgets } from '../../hub/inbound-budget.js';
import { PacedQueue } from '../../hub/paced-queue.js';

describe('budgets per client', () => {
  it('a paced queue handles one message per agent at a time, the newest waiting, within its budget', async () => {
    // Fake timers: the budget's clock and the queue's timers move only when the test says.
    vi.useFakeTimers();
    try {
      const handled: string[] = [];
      const superseded: string[] = [];
      const queue = new PacedQueue<string>(
        (agentId, message) => {
          handled.push(`${agentId}:${message}`);
          return 10; // each costs 10 units
        },
        { rate: 10, burst: 20 },
        (agentId) => superseded.push(agentId),
        () => Date.now(),
      );
      queue.submit('a', 'm1');
      queue.submit('a', 'm2');
      queue.submit('a', 'm3'); // replaces m2, still waiting
      queue.submit('b', 'n1');
      await vi.advanceTimersByTimeAsync(0);
      expect(handled).toEqual(['a:m1', 'b:n1', 'a:m3']);
      expect(superseded).toEqual(['a']);
      // a has spent its 20 saved up: one more is handled (a message is paid after), then it is in
      // debt, and the next waits until a second of budget has come back.
      queue.submit('a', 'm4');
      await vi.advanceTimersByTimeAsync(0);
      expect(handled).toContain('a:m4');
      queue.submit('a', 'm5');
      await vi.advanceTimersByTimeAsync(999);
      expect(handled).not.toContain('a:m5');
      await vi.advanceTimersByTimeAsync(1);
      expect(handled).toContain('a:m5');
      // Stopped: nothing more is handled, and nothing is left waiting on a timer.
      await vi.advanceTimersByTimeAsync(0);
      queue.submit('a', 'm6');
      queue.stop();
      queue.submit('a', 'm7');
      await vi.advanceTimersByTimeAsync(100_000);
      expect(handled).not.toContain('a:m6');
      expect(handled).not.toContain('a:m7');
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("an agent's inbound budget is kept across its connections, and a wall clock stepped back does not starve it", () => {
    const budgets = new InboundBudgets(1_000);
    const first = budgets.of('pi-1');
    expect(first.spend(2_500)).toBeGreaterThan(0); // over its 2,000 saved up
    // Reconnected: the same budget, still spent; another agent's is its own.
    expect(budgets.of('pi-1')).toBe(first);
    expect(budgets.of('pi-1').spend(1)).toBeGreaterThan(0);
    expect(budgets.of('pi-2').spend(1)).toBe(0);
    // Monotonic time: the wall clock stepped back an hour after the budget was made changes nothing.
    const budget = new InboundBudget(1_000);
    const realNow = Date.now;
    Date.now = () => realNow() - 3_600_000;
    try {
      expect(budget.spend(10)).toBe(0);
    } finally {
      Date.now = realNow;
    }
  });
});
