import { createHook } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { Deadlines } from '../src/host/deadlines.js';
import { waitFor } from './watch-helpers.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe('Deadlines', () => {
  it('expires each deadline once its limit has passed, in the order they started', async () => {
    const deadlines = new Deadlines();
    const expired: string[] = [];
    const start = performance.now();
    deadlines.add(60, performance.now(), () => expired.push(`a@${Math.round(performance.now() - start)}`));
    await sleep(20);
    deadlines.add(60, performance.now(), () => expired.push(`b@${Math.round(performance.now() - start)}`));
    await sleep(150);
    expect(expired.map((e) => e.split('@')[0])).toEqual(['a', 'b']);
    // Never early: each fires no sooner than its own limit after its start.
    const [a, b] = expired.map((e) => Number(e.split('@')[1]));
    expect(a).toBeGreaterThanOrEqual(59);
    expect(b).toBeGreaterThanOrEqual(79);
  });

  it('never expires a cancelled deadline, and still expires the ones after it', async () => {
    const deadlines = new Deadlines();
    const expired: string[] = [];
    const first = deadlines.add(40, performance.now(), () => expired.push('first'));
    deadlines.add(40, performance.now(), () => expired.push('second'));
    deadlines.cancel(40, first);
    await sleep(120);
    expect(expired).toEqual(['second']);
  });

  it('keeps limits apart: a short limit added after a long one expires first', async () => {
    const deadlines = new Deadlines();
    const expired: string[] = [];
    deadlines.add(150, performance.now(), () => expired.push('long'));
    deadlines.add(30, performance.now(), () => expired.push('short'));
    await sleep(90);
    expect(expired).toEqual(['short']);
    await sleep(120);
    expect(expired).toEqual(['short', 'long']);
  });

  it('expires the rest when one expiry throws, and takes deadlines added from inside an expiry', async () => {
    const deadlines = new Deadlines();
    const expired: string[] = [];
    deadlines.add(30, performance.now(), () => {
      throw new Error('boom');
    });
    deadlines.add(30, performance.now(), () => {
      expired.push('second');
      deadlines.add(30, performance.now(), () => expired.push('added inside'));
    });
    // Until both have fired, not a fixed time: a process stalled past the first 30 ms adds the
    // inner one late, and a fixed sleep could end before it is due.
    await waitFor(() => expired.length >= 2);
    await sleep(50);
    expect(expired).toEqual(['second', 'added inside']);
  });

  it('keeps the timers of only a few limits without executions: a limit of its own per execution does not leave a timer each for the whole limit', async () => {
    const live = new Set<number>();
    let counting = true;
    const hook = createHook({
      init: (id, type) => counting && type === 'Timeout' && live.add(id),
      destroy: (id) => live.delete(id),
    }).enable();
    try {
      const deadlines = new Deadlines();
      for (let i = 0; i < 500; i++) deadlines.cancel(3_600_000 - i, deadlines.add(3_600_000 - i, performance.now(), () => undefined));
      counting = false;
      await sleep(10);
      // Before, all 500 stayed armed for their hour.
      expect(live.size).toBeLessThanOrEqual(8);
      // A limit used again gets its timer back, and expires as before.
      const expired: string[] = [];
      deadlines.add(30, performance.now(), () => expired.push('again'));
      await sleep(90);
      expect(expired).toEqual(['again']);
    } finally {
      hook.disable();
    }
  });

  it('a limit used again while among the idle ones is no longer idle: limits going idle after it do not drop its pending execution', async () => {
    const deadlines = new Deadlines();
    deadlines.cancel(40, deadlines.add(40, performance.now(), () => undefined));
    const expired: string[] = [];
    deadlines.add(40, performance.now(), () => expired.push('used again'));
    // More limits going idle than are kept: the longest idle is dropped, its timer cleared.
    for (let i = 0; i < 10; i++) deadlines.cancel(60_000 + i, deadlines.add(60_000 + i, performance.now(), () => undefined));
    await sleep(150);
    expect(expired).toEqual(['used again']);
  });

  it("a limit's timer keeps the process alive while it has executions, and only then", () => {
    const timers: NodeJS.Timeout[] = [];
    const hook = createHook({ init: (_id, type, _trigger, resource) => void (type === 'Timeout' && timers.push(resource as NodeJS.Timeout)) }).enable();
    const deadlines = new Deadlines();
    let deadline: ReturnType<Deadlines['add']>;
    try {
      deadline = deadlines.add(60_000, performance.now(), () => undefined);
    } finally {
      hook.disable();
    }
    expect(timers).toHaveLength(1);
    const [timer] = timers as [NodeJS.Timeout];
    expect(timer.hasRef()).toBe(true);
    deadlines.cancel(60_000, deadline);
    expect(timer.hasRef()).toBe(false);
    // Used again, the kept timer is the one armed, and holds the process again.
    deadline = deadlines.add(60_000, performance.now(), () => undefined);
    expect(timer.hasRef()).toBe(true);
    deadlines.cancel(60_000, deadline);
    expect(timer.hasRef()).toBe(false);
  });
});
