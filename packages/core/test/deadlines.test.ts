import { createHook } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { Deadlines } from '../src/host/deadlines.js';

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
    await sleep(150);
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
});
