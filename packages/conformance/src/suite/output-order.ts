import type { IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { expectOk } from '../expect-result.js';
import { BASIC } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';

/** What reached onLog and onEvent, tagged with its stream, before and after the result came. */
interface Heard {
  before: string[];
  after: string[];
}

/**
 * Runs `interleaves` and gathers what it said as `<stream>:<n>`, split at the result. The time
 * after it is a bound for "nothing came later", generous for a loaded machine.
 */
async function hear(backend: IExecutionBackend, input: { rounds: number; output?: boolean }): Promise<Heard & { said: number }> {
  const heard: Heard = { before: [], after: [] };
  let settled = false;
  const note = (entry: string) => (settled ? heard.after : heard.before).push(entry);
  const result = await backend.execute(
    { pluginId: BASIC, handlerId: 'interleaves', input },
    {
      timeoutMs: 30_000,
      onLog: (line) => note(`${line.stream}:${line.message.slice(1)}`),
      onEvent: (event) => note(`event:${(event.event as { said: number }).said}`),
    },
  );
  settled = true;
  expectOk(result);
  await new Promise((resolve) => setTimeout(resolve, 200));
  return { ...heard, said: (result.data as { said: number }).said };
}

/** The numbers heard on one stream, in the order heard. */
const onStream = (heard: string[], stream: string) => heard.filter((h) => h.startsWith(`${stream}:`)).map((h) => Number(h.slice(stream.length + 1)));

const upTo = (count: number, step: number, from: number) => Array.from({ length: count }, (_, i) => from + i * step);

/**
 * A host that builds a progress view from a handler's logger lines and events reads them in the
 * order the handler made them, all before the result and none after, on every backend; stdout
 * and stderr each keep their own order (across two pipes the order between them, and against
 * the logger, is not kept everywhere: docs/backends/subprocess.md).
 */
export function describeOutputOrder(suite: SuiteContext): void {
  describe('order of logs and events', () => {
    it('2,000 ctx.logger lines and ctx.emit events, interleaved, reach onLog and onEvent in the order made, all before the result, none after', async () => {
      const heard = await hear(suite.make(), { rounds: 1000 });
      expect(heard.said).toBe(2000);
      expect(heard.after).toEqual([]);
      const expected = upTo(2000, 1, 0).map((n) => (n % 2 === 0 ? `logger:${n}` : `event:${n}`));
      // Compared whole only when it differs somewhere, so that a failure names the first place.
      const firstOut = heard.before.findIndex((h, i) => h !== expected[i]);
      expect({ firstOut, length: heard.before.length, there: firstOut < 0 ? [] : heard.before.slice(Math.max(0, firstOut - 2), firstOut + 3) }).toEqual({ firstOut: -1, length: 2000, there: [] });
    });

    it.runIf(suite.capabilities.capturesOutput !== false)('stdout and stderr lines interleaved with logger lines and events: each stream in the order written, all before the result, none after', async () => {
      const heard = await hear(suite.make(), { rounds: 500, output: true });
      expect(heard.said).toBe(2000);
      expect(heard.after).toEqual([]);
      expect(heard.before).toHaveLength(2000);
      expect(onStream(heard.before, 'logger')).toEqual(upTo(500, 4, 0));
      expect(onStream(heard.before, 'event')).toEqual(upTo(500, 4, 1));
      expect(onStream(heard.before, 'stdout')).toEqual(upTo(500, 4, 2));
      expect(onStream(heard.before, 'stderr')).toEqual(upTo(500, 4, 3));
    });
  });
}
