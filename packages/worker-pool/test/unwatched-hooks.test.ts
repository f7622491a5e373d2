/**
 * Hooks a handler can set on its thread with no watched intrinsic replaced: V8's promise hooks
 * (through `v8.promiseHooks` or the deprecated `async_wrap` binding) and the native Error
 * subclasses' prototypes. Neither reaches another handler's execution: the thread is retired first.
 */
import { describe, expect, it } from 'vitest';
import { POOL, okData, runners, useBackends } from './helpers.js';

/** Node 24 has no `async_wrap` binding for process.binding() (nor, so, that way to set promise hooks). */
function hasAsyncWrapBinding(): boolean {
  const { noDeprecation } = process;
  process.noDeprecation = true;
  try {
    return typeof (process as unknown as { binding(name: string): { setPromiseHooks?: unknown } }).binding('async_wrap').setPromiseHooks === 'function';
  } catch {
    return false;
  } finally {
    process.noDeprecation = noDeprecation;
  }
}

describe('worker-pool: hooks left on a thread without replacing a watched intrinsic', () => {
  const backends = useBackends();

  for (const how of ['v8', 'binding']) {
    it.runIf(how === 'v8' || hasAsyncWrapBinding())(`a promise hook one handler sets (${how}) sees no other handler's promises: the thread is retired first`, async () => {
      const backend = backends.make({ maxThreads: 1, minThreads: 1, workspace: false });
      expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'sets-promise-hook', input: { how } }))).toBe('set');
      expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'awaits' }))).toBe('done');
      // Before: dozens (the other handler's promises, the runtime's around them), on the same thread.
      expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'promises-seen' }))).toBe(0);
      expect(await runners(backend)).toMatchObject({ redispatched: 1, retired: { 'handles-left': 1 } });
    });
  }

  it("a getter one handler puts on TypeError.prototype.name neither reads nor renames another handler's TypeError: the thread is retired first", async () => {
    const backend = backends.make({ maxThreads: 1, minThreads: 1, workspace: false });
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'renames-type-error', input: { name: 'Forged' } }))).toBe('set');
    const result = await backend.execute({ pluginId: POOL, handlerId: 'throws-type-error' });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    // Before: details.name 'Forged', the stack 'Forged: token=B-only', and the message kept by the getter.
    expect(result.error).toMatchObject({ code: 'HANDLER_ERROR', message: 'token=B-only', details: { name: 'TypeError' } });
    expect(String(result.error.stack)).toMatch(/^TypeError: token=B-only/);
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'type-errors-seen' }))).toEqual([]);
    expect(await runners(backend)).toMatchObject({ redispatched: 1, retired: { 'globals-tampered': 1 } });
  });
});
