/**
 * What a backend package that fails to load is said as (backendLoader, the lazy backend's loader):
 * whatever the import threw, BACKEND_NOT_INSTALLED 'load-failed', never a TypeError in its place.
 */
import { describe, expect, it } from 'vitest';
import { BackendNotInstalledError } from '../src/errors.js';
import { backendLoader } from '../src/host/backend-packages.js';

describe('a backend package whose import throws a value with no text', () => {
  it.each([
    ['a null-prototype object', () => Object.create(null) as unknown],
    ['an object whose message getter throws', () => Object.defineProperty({}, 'message', { get: () => { throw new Error('no message'); } }) as unknown],
    ['an object whose code getter throws', () => Object.defineProperty(new Error('broken'), 'code', { get: () => { throw new Error('no code'); } }) as unknown],
  ])('%s: BACKEND_NOT_INSTALLED load-failed naming the package', async (_name, thrown) => {
    const load = backendLoader(() => Promise.reject(thrown()));
    const error = await load('worker-pool').then(() => undefined, (e: unknown) => e);
    // Before: a TypeError ("Cannot convert object to primitive value"), or the getter's own error.
    expect(error).toBeInstanceOf(BackendNotInstalledError);
    expect(error).toMatchObject({ code: 'BACKEND_NOT_INSTALLED', details: { type: 'worker-pool', package: '@kb-labs/plugin-execution-worker-pool', reason: 'load-failed' } });
    expect((error as Error).message).toMatch(/^The "worker-pool" backend \(@kb-labs\/plugin-execution-worker-pool\) failed to load: /);
  });
});
