import { HandlerError } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { noNetworkNote } from '../src/host/network-note.js';

/** What a handler's `fetch()` throws with nothing to connect to: `fetch failed`, the code in its cause. */
function fetchFailed(code: string, wrappedIn = 0): HandlerError {
  let cause: unknown = new TypeError('fetch failed', { cause: Object.assign(new Error(`connect ${code}`), { code }) });
  for (let i = 0; i < wrappedIn; i++) cause = new Error('wrapped', { cause });
  return new HandlerError('fetch failed', { cause });
}

describe('noNetworkNote()', () => {
  it('says why a handler without "network" failed on the network, for each code a network of its own fails with', () => {
    for (const code of ['ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'EAI_AGAIN', 'ENOTFOUND']) {
      expect(noNetworkNote(fetchFailed(code), {})).toBe(
        `; it failed on the network (${code}) in the sandbox, which gives a handler whose manifest does not declare "network": true a network of its own with nothing in it`,
      );
    }
    expect(noNetworkNote(fetchFailed('ECONNREFUSED', 6), {})).toContain('(ECONNREFUSED)');
  });

  it('says nothing when the manifest declares network, for another failure, or for a cause chain deeper than 8 (or a cycle)', () => {
    expect(noNetworkNote(fetchFailed('ECONNREFUSED'), { network: true })).toBe('');
    expect(noNetworkNote(fetchFailed('ECONNRESET'), {})).toBe('');
    expect(noNetworkNote(new HandlerError('boom'), {})).toBe('');
    expect(noNetworkNote(fetchFailed('ENOTFOUND', 7), {})).toBe('');
    const cycle: { cause?: unknown } = {};
    cycle.cause = cycle;
    expect(noNetworkNote(new HandlerError('loop', { cause: cycle }), {})).toBe('');
  });
});
