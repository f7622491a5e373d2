import type { LogEntry } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { BASIC, POOL, expectOk, okData, useBackends } from './helpers.js';

// The thread's stdout and stderr are read in-process, on the channel that carries its logger lines
// and events (docs/backends/subprocess.md: "the worker-pool backend ... keeps them in the order
// written"), so a host sees all four in the order the handler made them; a subprocess child's two
// pipes cannot promise that, which the conformance suite allows for.
describe('worker-pool: the order of output', () => {
  const backends = useBackends();

  it('console.log, stderr, ctx.logger and ctx.emit interleaved (2,000 in all) reach the host in the order written', async () => {
    const heard: string[] = [];
    const result = await backends.make().execute(
      { pluginId: BASIC, handlerId: 'interleaves', input: { rounds: 500, output: true } },
      {
        timeoutMs: 30_000,
        onLog: (line: LogEntry) => heard.push(`${line.stream}:${line.message.slice(1)}`),
        onEvent: (event) => heard.push(`event:${(event.event as { said: number }).said}`),
      },
    );
    expectOk(result);
    const streams = ['logger', 'event', 'stdout', 'stderr'];
    const expected = Array.from({ length: 2000 }, (_, n) => `${streams[n % 4]}:${n}`);
    const firstOut = heard.findIndex((h, i) => h !== expected[i]);
    expect({ firstOut, length: heard.length, there: firstOut < 0 ? [] : heard.slice(Math.max(0, firstOut - 2), firstOut + 3) }).toEqual({ firstOut: -1, length: 2000, there: [] });
  });

  it("a write's callback is called (a handler that waits for it, as stream.pipeline() to process.stdout does, goes on)", async () => {
    const heard: string[] = [];
    const result = await backends.make().execute({ pluginId: POOL, handlerId: 'waits-for-writes' }, { timeoutMs: 5000, onLog: (line: LogEntry) => heard.push(`${line.stream}:${line.message}`) });
    // Before (no callback): TIMEOUT, the handler waiting for good.
    expect(okData(result)).toBe('written');
    expect(heard).toEqual(['stdout:first', 'stderr:second']);
  });
});
