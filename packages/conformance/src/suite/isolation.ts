import { describe, expect, it } from 'vitest';
import { expectError, expectOk } from '../expect-result.js';
import { BASIC, HOSTILE } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';

/** A runner that dies fails only its own execution (backends that isolate crashes). */
export function describeCrashes(suite: SuiteContext): void {
  const { make } = suite;
  describe.runIf(suite.capabilities.isolatesCrashes)('crashes', () => {
    it.each([
      ['exit', { code: 7 }, 'exit'],
      ['exit', { code: 0 }, 'exit'],
      ['throw-in-timer', undefined, 'uncaught-exception'],
      ['unhandled-rejection', undefined, 'unhandled-rejection'],
    ])('%s %j → WORKER_CRASHED (the same reason on every backend), then the backend keeps serving', async (handlerId, input, reason) => {
      const backend = make();
      const result = await backend.execute({ pluginId: HOSTILE, handlerId, input }, { timeoutMs: 20_000 });
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.details.reason).toBe(reason);
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
    });

    it("a crash's message shows the terminal escape sequences of the plugin's error as escapes, not sent to a terminal that prints it (its details keep them)", async () => {
      const thrown = 'boom \u001b]0;owned\u0007\u001b[2J';
      const result = await make().execute({ pluginId: HOSTILE, handlerId: 'throw-in-timer', input: { message: thrown } }, { timeoutMs: 20_000 });
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.message).toContain('boom \\x1b]0;owned\\x07\\x1b[2J');
      expect(result.error.message).not.toContain('\u001b');
    });

    it('a crash fails only the execution on the crashed runner', async () => {
      const backend = make();
      const others = Array.from({ length: 4 }, (_, i) => backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 300 + i } }));
      const crash = await backend.execute({ pluginId: HOSTILE, handlerId: 'exit', input: { code: 3 } });
      expectError(crash, 'WORKER_CRASHED');
      for (const result of await Promise.all(others)) expectOk(result);
    });
  });
}

/** What one execution does to globals does not reach the next (backends that isolate globals). */
export function describeGlobalState(suite: SuiteContext): void {
  const { make } = suite;
  describe.runIf(suite.capabilities.isolatesGlobals)('global state', () => {
    it('a prototype change by one execution does not reach the next', async () => {
      const backend = make();
      expectOk(await backend.execute({ pluginId: HOSTILE, handlerId: 'pollute-prototype' }));
      const check = await backend.execute({ pluginId: HOSTILE, handlerId: 'check-prototype' });
      expectOk(check);
      expect(check.data).toEqual({ polluted: false });
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });

    it("a process listener or a process.env trap left by one execution does not see the next one (its crash stays WORKER_CRASHED)", async () => {
      const backend = make({ maxConcurrency: 1 });
      expectOk(await backend.execute({ pluginId: HOSTILE, handlerId: 'leave-process-traps', input: { mode: 'install' } }));
      const crash = await backend.execute({ pluginId: HOSTILE, handlerId: 'throw-in-timer' }, { timeoutMs: 5000 });
      expectError(crash, 'WORKER_CRASHED');
      expectOk(await backend.execute({ pluginId: HOSTILE, handlerId: 'read-env', input: { name: 'HOME' } }));
      const collected = await backend.execute({ pluginId: HOSTILE, handlerId: 'leave-process-traps', input: { mode: 'collect' } });
      expectOk(collected);
      // Nothing of the other executions reached the traps: gone with their thread (null), or met
      // again, empty, by their own handler on the thread kept for it (a worker pool's).
      const { caught, read } = collected.data as { caught: unknown; read: unknown };
      for (const seen of [caught, read]) expect(seen === null || (Array.isArray(seen) && seen.length === 0)).toBe(true);
    });

    it('tampered JSON/Promise/structuredClone do not reach the next execution', async () => {
      const backend = make();
      await backend.execute({ pluginId: HOSTILE, handlerId: 'tamper-globals' });
      const next = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: { still: 'fine' } });
      expectOk(next);
      expect(next.data).toEqual({ still: 'fine' });
    });
  });
}
