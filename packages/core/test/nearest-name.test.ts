import { describe, expect, it } from 'vitest';
import { didYouMean, nearest, unknownKeyMessage } from '../src/host/nearest-name.js';

// The "did you mean" hints of every options object, request field and manifest key come from here.
describe('nearest (the "did you mean" name)', () => {
  it('takes a typo within two edits, whatever its case, and nothing further off', () => {
    expect(nearest('MAXTHREADS', ['maxThreads', 'minThreads'])).toBe('maxThreads');
    // Two letters changed: two edits.
    expect(nearest('mixThreadz', ['maxThreads'])).toBe('maxThreads');
    expect(nearest('foo', ['bar'])).toBeUndefined();
  });

  it('takes the shortest known name holding a name of 5 characters or more whole, never a shorter one', () => {
    expect(nearest('concurrency', ['maxConcurrencyPerPlugin', 'maxConcurrency'])).toBe('maxConcurrency');
    expect(nearest('limit', ['maxLimitValue'])).toBe('maxLimitValue');
    expect(nearest('rent', ['currentLimitRange'])).toBeUndefined();
  });

  it("takes a typo of a known name's last words of 6 letters or more: one edit for a short one, not two", () => {
    expect(nearest('threaad', ['maxThread'])).toBe('maxThread');
    expect(nearest('concurency', ['maxConcurrency'])).toBe('maxConcurrency');
    expect(nearest('cncurency', ['maxConcurrency'])).toBeUndefined();
    // `Limit` is 5 letters: a typo of it is too likely a typo of anything.
    expect(nearest('limitt', ['maxLimit'])).toBeUndefined();
  });

  it('is said as a phrase, after where the key goes when it goes elsewhere', () => {
    expect(didYouMean('maxThread', ['maxThreads'])).toBe('; did you mean "maxThreads"?');
    expect(didYouMean('foo', ['bar'])).toBe('');
    expect(unknownKeyMessage('goes in the request', 'maxThreads')).toBe('goes in the request; or did you mean "maxThreads"?');
    expect(unknownKeyMessage(undefined, 'maxThreads')).toBe('unknown option; did you mean "maxThreads"?');
    expect(unknownKeyMessage(undefined, undefined)).toBe('unknown option');
  });
});
