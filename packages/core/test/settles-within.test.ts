import { describe, expect, it } from 'vitest';
import { settlesWithin } from '../src/settles-within.js';

describe('settlesWithin()', () => {
  it('is true for a promise that resolves or rejects in time, false for one that does not', async () => {
    expect(await settlesWithin(Promise.resolve(1), 1000)).toBe(true);
    expect(await settlesWithin(Promise.reject(new Error('no')), 1000)).toBe(true);
    expect(await settlesWithin(new Promise(() => {}), 20)).toBe(false);
    expect(await settlesWithin(new Promise(() => {}), 20, false)).toBe(false);
  });
});
