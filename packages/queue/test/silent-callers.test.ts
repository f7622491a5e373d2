import { describe, expect, it } from 'vitest';
import { SilentCallers } from '../src/runner/silent-callers.js';

// Which callers' tasks a worker hands back unasked, and for how long (runner/silent-callers.ts),
// at given moments: chaos-host-link.test.ts cuts a real host's link for the same, in ~20 s.
describe('SilentCallers', () => {
  it('passes a silent caller over for 2 s, each silence after for twice as long up to 10 s; one that answers is heard at once', () => {
    const callers = new SilentCallers();
    expect(callers.handBackFor('h1', 0)).toBe(0);
    const passes: number[] = [];
    for (let silence = 0; silence < 5; silence++) {
      callers.silent('h1', 100);
      passes.push(callers.handBackFor('h1', 100));
    }
    expect(passes).toEqual([2000, 4000, 8000, 10_000, 10_000]);
    // Another caller is not passed over for h1's silences.
    expect(callers.handBackFor('h2', 100)).toBe(0);
    expect(callers.handBackFor('h1', 5100)).toBe(5000);
    callers.answered('h1');
    expect(callers.handBackFor('h1', 5100)).toBe(0);
    // Its next silence is its first again.
    callers.silent('h1', 6000);
    expect(callers.handBackFor('h1', 6000)).toBe(2000);
  });

  it("once the pass-over ends, one task asks the caller and the others wait until that ask is settled (its time limit and 500 ms)", () => {
    const callers = new SilentCallers();
    callers.silent('h1', 0);
    expect(callers.handBackFor('h1', 1999)).toBe(1);
    expect(callers.handBackFor('h1', 2000)).toBe(0);
    callers.asking('h1', 3000, 2000);
    expect(callers.handBackFor('h1', 2000)).toBe(3500);
    expect(callers.handBackFor('h1', 5499)).toBe(1);
    expect(callers.handBackFor('h1', 5500)).toBe(0);
    // A caller never passed over is asked by every task of its.
    callers.asking('h2', 3000, 2000);
    expect(callers.handBackFor('h2', 2000)).toBe(0);
  });

  it('lets go of callers no task asks any more (a peer named 1,000 of its own, one task each, which it then removed): a long-lived worker kept each', () => {
    const callers = new SilentCallers();
    for (let i = 0; i < 1000; i++) callers.silent(`forged-${i}`, i);
    // A caller whose tasks come back as its pass-over ends, and is silent again: kept, its pass-over doubled.
    callers.silent('h1', 10_000);
    callers.asking('h1', 3000, 12_000);
    expect(callers.known).toBe(1001);
    // 10 s after the forged callers' pass-overs (and their asks) ended, a new silence.
    callers.silent('h2', 13_000);
    expect(callers.known).toBe(2);
    callers.silent('h1', 15_500);
    expect(callers.handBackFor('h1', 15_500)).toBe(4000);
  });

  it("keeps a caller whose ask is still under way, however long ago its pass-over ended: its other tasks still wait for that ask", () => {
    const callers = new SilentCallers();
    callers.silent('h1', 0);
    // Its pass-over ends at 2 s; a task asks it then, for a started time limit of 30 s.
    callers.asking('h1', 30_000, 2000);
    // A silence of another caller 13 s on lets go of what no task asks any more: not h1, asked until 32.5 s.
    callers.silent('h2', 15_000);
    expect(callers.known).toBe(2);
    expect(callers.handBackFor('h1', 15_000)).toBe(17_500);
  });
});
