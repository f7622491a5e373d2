import { describe, expect, it } from 'vitest';
import { settledInGroups } from '../src/host/settled-in-groups.js';

describe('settledInGroups', () => {
  it('settles every item in order, rejections and throws included, with no more than a group in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const settled = await settledInGroups([...Array(150).keys()], 64, async (n, index) => {
      expect(index).toBe(n);
      if (n === 7) throw new Error('seven');
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((resolve) => setImmediate(resolve));
      inFlight--;
      if (n === 140) return Promise.reject(new Error('one forty'));
      return n * 2;
    });
    expect(settled).toHaveLength(150);
    expect(settled[7]).toMatchObject({ status: 'rejected', reason: new Error('seven') });
    expect(settled[140]).toMatchObject({ status: 'rejected', reason: new Error('one forty') });
    expect(settled[149]).toEqual({ status: 'fulfilled', value: 298 });
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(148);
    expect(most).toBe(64);
  });

  it('an empty list settles to an empty list', async () => {
    expect(await settledInGroups([], 64, () => 1)).toEqual([]);
  });
});
