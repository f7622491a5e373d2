import { describe, expect, it } from 'vitest';
import { Holdings } from '../src/host/holdings.js';

describe('Holdings', () => {
  it('gives back newest first, each once, synchronously when none waits', () => {
    const holdings = new Holdings();
    const order: string[] = [];
    for (const name of ['slot', 'workspace', 'lock']) holdings.hold(() => order.push(name));
    expect(holdings.releaseAll()).toBeUndefined();
    expect(order).toEqual(['lock', 'workspace', 'slot']);
    expect(holdings.releaseAll()).toBeUndefined();
    expect(order).toHaveLength(3);
  });

  it('gives back the rest when one throws or rejects, after waiting for one that waits', async () => {
    const holdings = new Holdings();
    const order: string[] = [];
    let letGo!: () => void;
    holdings.hold(() => order.push('first'));
    holdings.hold(() => new Promise<void>((resolve) => (letGo = resolve)).then(() => order.push('waited')));
    holdings.hold(() => Promise.reject(new Error('release failed')));
    holdings.hold(() => {
      throw new Error('release threw');
    });
    const released = holdings.releaseAll();
    expect(released).toBeInstanceOf(Promise);
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual([]);
    letGo();
    await released;
    expect(order).toEqual(['waited', 'first']);
  });
});
