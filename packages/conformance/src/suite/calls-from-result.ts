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
  });
}
