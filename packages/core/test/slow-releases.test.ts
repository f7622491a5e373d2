import { describe, expect, it } from 'vitest';
import { SLOW_RELEASE_MS, slowReleases } from '../src/host/slow-releases.js';

describe('health() on releases that hold their slots after the result', () => {
  it('says nothing of releases younger than the bound', () => {
    expect(slowReleases(new Map([['a', 1000]]), 1000 + SLOW_RELEASE_MS)).toEqual([]);
    expect(slowReleases(new Map(), 1e9)).toEqual([]);
  });

  it('names how many are older than the bound, and how long the oldest has held its slot', () => {
    const now = 100_000;
    const one = slowReleases(new Map([['a', now - 7_400], ['b', now - 100]]), now);
    expect(one).toEqual([expect.stringMatching(/^the slot of a finished execution is still held after 5 s \(the oldest for 7 s\) until its workspace is removed/)]);
    const two = slowReleases(new Map([['a', now - 61_000], ['b', now - 6_000]]), now);
    expect(two).toEqual([expect.stringMatching(/^the slots of 2 finished executions are still held after 5 s \(the oldest for 61 s\)/)]);
  });
});
