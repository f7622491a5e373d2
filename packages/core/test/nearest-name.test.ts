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

  it('takes one edit for a name of up to 4 letters, two letters swapped counting as one', () => {
    // Two edits of a 3- or 4-letter name leave one or two of its letters: execute({ foo: 1 }) was
    // told 'did you mean "pool"? (… an option of the queue backend …)', and { port } the same.
    expect(nearest('foo', ['timeoutMs', 'pool'])).toBeUndefined();
    expect(nearest('port', ['pool'])).toBeUndefined();
    expect(nearest('pol', ['pool'])).toBe('pool');
    expect(nearest('rnu', ['run'])).toBe('run');
    expect(nearest('raed', ['read', 'write'])).toBe('read');
    // Past 4 letters a swap is one edit of the two a typo may have.
    expect(nearest('tiemoutMs', ['timeoutMs'])).toBe('timeoutMs');
    expect(nearest('tiemuotMs', ['timeoutMs'])).toBe('timeoutMs');
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
