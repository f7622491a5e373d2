import { describe, expect, it } from 'vitest';
import type * as HostKit from '@kb-labs/plugin-execution-core/host-kit';
import { loadInJestLikeRealm } from './jest-like-realm.js';

// An in-process handler under Jest runs in the test file's vm context, and what Node throws at it
// (an aborted signal's reason, `signal.throwIfAborted()`, structuredClone's refusal: DOMExceptions)
// is of Node's realm, whose Error is not the context's.
const core = loadInJestLikeRealm<typeof HostKit>('@kb-labs/plugin-execution-core/host-kit');

describe('what a handler threw, of another realm (a host run by Jest)', () => {
  it('a DOMException is a HandlerError with its name and message, as in a plain host, not "a non-Error object: {}"', () => {
    for (const thrown of [AbortSignal.abort().reason as DOMException, new DOMException('() => 1 could not be cloned.', 'DataCloneError')]) {
      const error = core.toHandlerError(thrown);
      expect(error.code).toBe('HANDLER_ERROR');
      expect(error.message).toBe(thrown.message);
      expect(error.details).toEqual({ name: thrown.name });
      expect(error.cause).toBe(thrown);
    }
  });

  it('an Error of that realm is one too', () => {
    const error = core.toHandlerError(Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' }));
    expect(error.message).toBe('ENOENT: no such file');
    expect(error.details).toEqual({ name: 'Error' });
  });
});
