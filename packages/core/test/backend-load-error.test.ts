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

describe('a backend package of another version, whose class has no execute() (or stats, health, shutdown)', () => {
  it('is BACKEND_NOT_INSTALLED load-failed on every execute(), which never throws nor rejects; stats() and health() still answer', async () => {
    const { lazyExecutionBackend } = await import('../src/host/lazy-backend.js');
    const backend = lazyExecutionBackend({}, backendLoader(async () => ({ InProcessBackend: class {} })));
    const call = () => {
      try {
        return backend.execute({ pluginId: 'p', handlerId: 'h', input: 1 }).then((result) => result, (error: unknown) => ({ rejected: error }));
      } catch (error) {
        return { thrown: error };
      }
    };
    // The first loads the package; the second takes the hot path of a loaded backend.
    for (const result of [await call(), await call()]) {
      // Before: a TypeError, rejected the first time and thrown synchronously after ("this.#backend.execute is not a function").
      expect(result).toMatchObject({ ok: false, error: { code: 'BACKEND_NOT_INSTALLED', details: { reason: 'load-failed', package: '@kb-labs/plugin-execution-in-process' } } });
    }
    await expect(backend.stats()).resolves.toMatchObject({ state: 'closed', active: 0 });
    await expect(backend.health()).resolves.toMatchObject({ ok: false, state: 'closed', problems: [expect.stringMatching(/has no execute\(\)/)] });
    await backend.shutdown();
  });
});
