import { describe, expect, it } from 'vitest';
import { watchCalls } from '../src/call-watch.js';

describe('watchCalls()', () => {
  it('sees nothing until a watched function is called, and passes `this`, the arguments and the answer through', () => {
    const target: Record<string, unknown> = {
      base: 10,
      add(this: { base: number }, a: number, b: number) {
        return this.base + a + b;
      },
      other: () => 'other',
      notAFunction: 5,
    };
    const touched = watchCalls(target, ['add', 'notAFunction', 'missing']);
    expect(touched()).toBe(false);
    expect((target.other as () => string)()).toBe('other');
    expect(target.notAFunction).toBe(5);
    expect('missing' in target).toBe(false);
    expect(touched()).toBe(false);
    expect((target as { add: (a: number, b: number) => number }).add(1, 2)).toBe(13);
    expect(touched()).toBe(true);
  });

  it('takes a wrapper replaced or removed as touched', () => {
    const replaced: Record<string, unknown> = { hook: () => undefined };
    const replacedTouched = watchCalls(replaced, ['hook']);
    replaced.hook = () => undefined;
    expect(replacedTouched()).toBe(true);
    const removed: Record<string, unknown> = { hook: () => undefined };
    const removedTouched = watchCalls(removed, ['hook']);
    delete removed.hook;
    expect(removedTouched()).toBe(true);
  });
});
