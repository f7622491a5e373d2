import { readdir, rm } from 'node:fs/promises';
import { CALLS_IN_FLIGHT } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { expectError, waitFor } from '../expect-result.js';
import { BASIC } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';

/** What a handler that honours the caller's abort sees of its platform calls: each settles, so it can finish within its grace. */
export function describeCallsOfAborted(suite: SuiteContext): void {
  const { make } = suite;
  describe('platform calls of an aborted execution', () => {
    it(`calls waiting their turn (past ${CALLS_IN_FLIGHT} in the host) and one made after the abort are refused (ABORTED), not left pending: a handler that awaits them finishes`, async () => {
      // A service that answers nothing until the test is over: the calls the host has stay in
      // flight, so the rest wait their turn in the handler's runtime when the caller aborts.
      let answerAll!: () => void;
      const over = new Promise<void>((resolve) => (answerAll = resolve));
      const kv = { echo: async (value: unknown) => (await over, value) };
      const backend = make({ platform: { kv }, permissions: { platform: { kv: ['echo'] } } });
      const controller = new AbortController();
      const result = await backend.execute(
        { pluginId: BASIC, handlerId: 'awaits-calls-on-abort', input: { n: CALLS_IN_FLIGHT + 6 } },
        { signal: controller.signal, keepWorkspace: true, timeoutMs: 60_000, onEvent: () => controller.abort() },
      );
      const dir = result.meta.workspaceDir;
      try {
        expectError(result, 'ABORTED');
        // The handler writes its mark once both calls settled. Before: on the worker-pool and
        // subprocess backends neither ever did, and the runner was ended at its grace's end.
        await waitFor(async () => (await readdir(dir!)).length > 0).catch(() => undefined);
        expect(await readdir(dir!)).toEqual(['last-ABORTED-then-ABORTED.txt']);
      } finally {
        answerAll();
        // Kept, so that the handler's mark outlives the result: removed with the mark beside it.
        if (dir) await Promise.all([dir, `${dir}.kept`].map((kept) => rm(kept, { recursive: true, force: true })));
      }
    });
  });
}
