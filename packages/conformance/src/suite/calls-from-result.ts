import { CALLS_IN_FLIGHT } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { expectOk } from '../expect-result.js';
import { BASIC } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';

/** A handler's result is decided when it returns: what the copy of that result runs of its code calls the host no more. */
export function describeCallsFromResult(suite: SuiteContext): void {
  const { make } = suite;
  describe('platform calls once the handler returned', () => {
    it('a platform call made as the result is copied (a getter of the result) starts nothing on the host', async () => {
      const seen: unknown[] = [];
      const kv = { echo: async (value: unknown) => (seen.push(value), value) };
      const backend = make({ platform: { kv }, permissions: { platform: { kv: ['echo'] } } });
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'calls-from-result-getter' });
      expectOk(result);
      expect(result.data).toEqual({ value: 'copied' });
      // Before, in-process: ['from a getter of the result'], the host's service run after the handler had returned.
      expect(seen).toEqual([]);
    });

    it(`a platform call, a log line or an event made after the handler returned, while the calls it fired before still go out (past ${CALLS_IN_FLIGHT} in the host), starts nothing on the host`, async () => {
      const seen: unknown[] = [];
      const kv = { echo: async (value: unknown) => (seen.push(value), await new Promise((resolve) => setTimeout(resolve, 1)), value) };
      const backend = make({ platform: { kv }, permissions: { platform: { kv: ['echo'] } } });
      const n = CALLS_IN_FLIGHT * 3;
      const said: unknown[] = [];
      const result = await backend.execute(
        { pluginId: BASIC, handlerId: 'calls-after-return', input: { n } },
        { timeoutMs: 30_000, onLog: (line) => said.push(line.message), onEvent: (event) => said.push(event.event) },
      );
      expectOk(result);
      expect(result.data).toBe('fired');
      // The calls it fired before it returned all reach the host, and only those. Before, worker-pool
      // and subprocess: 'late' among them, sent and run while the runner sent the rest before its
      // result, and its log line and event reached the caller (dropped in-process).
      expect(seen).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(said).toEqual([]);
    });
  });
}
