import type { ExecutionResult, IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { BASIC } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';

/** When the ending is made, after the call: in the same microtask queue, a turn later, or 1 or 5 ms on. */
const MOMENTS = ['microtask', 0, 1, 5] as const;
type Moment = (typeof MOMENTS)[number];

const at = (moment: Moment) => new Promise<void>((resolve) => (moment === 'microtask' ? queueMicrotask(resolve) : moment === 0 ? setImmediate(resolve) : setTimeout(resolve, moment)));

/** One execution of `slow` ended by `end` at `moment`: its result, how often onStart came, and whether one came after the result. */
async function endedAt(backend: IExecutionBackend, moment: Moment, end: 'abort' | 'time limit' | 'shutdown') {
  const seen = { starts: 0, startsAfterResult: 0 };
  let settled = false;
  const controller = new AbortController();
  const onStart = () => {
    seen.starts++;
    if (settled) seen.startsAfterResult++;
  };
  const timeoutMs = end === 'time limit' ? (moment === 'microtask' || moment === 0 ? 1 : moment) : 30_000;
  const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 5000 } }, { signal: controller.signal, timeoutMs, onStart });
  void running.then(() => (settled = true));
  if (end !== 'time limit') await at(moment);
  if (end === 'abort') controller.abort();
  if (end === 'shutdown') void backend.shutdown({ timeoutMs: 0 });
  const result = await running;
  // A runner that took it as it ended (a queue worker's `started` on its way) has had time to say so.
  await new Promise((resolve) => setTimeout(resolve, 150));
  return { result, ...seen };
}

/** `onStart` at most once, never after the result, and never for an execution its result says never started. */
function expectStartsFit(outcome: { result: ExecutionResult; starts: number; startsAfterResult: number }, label: string): void {
  const { result, starts, startsAfterResult } = outcome;
  const phase = result.ok ? undefined : (result.error.details as { phase?: string } | undefined)?.phase;
  const code = result.ok ? 'ok' : result.error.code;
  const neverStarted = phase === 'queued';
  expect({ label, code, starts, startsAfterResult, onStartForOneNeverStarted: neverStarted && starts > 0 }).toEqual({
    label,
    code,
    starts: neverStarted ? 0 : 1,
    startsAfterResult: 0,
    onStartForOneNeverStarted: false,
  });
}

/**
 * README: `onStart` is called once when a runner takes the execution, never for one that never
 * started. An ending that comes as the runner takes it (the caller's abort, the time limit,
 * shutdown, from a microtask to 5 ms after the call) leaves it called once and before the
 * result, or not at all with `phase: 'queued'`: never after the result, never twice.
 */
export function describeStartCallback(suite: SuiteContext): void {
  describe('onStart', () => {
    for (const end of ['abort', 'time limit', 'shutdown'] as const) {
      it(`an execution ended by ${end === 'shutdown' ? 'shutdown' : `its ${end}`} just as it starts: onStart once before the result, or never with phase 'queued'; never after the result`, async () => {
        // One backend warmed by a first run (a runner ready to take it), then a fresh one (a runner still starting).
        const warm = suite.make();
        await warm.execute({ pluginId: BASIC, handlerId: 'echo', input: 'warm' });
        for (const moment of MOMENTS) {
          const backend = end === 'shutdown' ? suite.make() : warm;
          if (end === 'shutdown') await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'warm' });
          expectStartsFit(await endedAt(backend, moment, end), `warm, ${end} at ${moment}`);
          expectStartsFit(await endedAt(suite.make(), moment, end), `cold, ${end} at ${moment}`);
        }
      }, 120_000);
    }

    it('never called for an execution refused: QUEUE_FULL, a request or an option that is not valid', async () => {
      const backend = suite.make({ maxConcurrency: 1, maxQueue: 0 });
      const starts: string[] = [];
      const first = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 300 } }, { onStart: () => void starts.push('first') });
      const refusals = await Promise.all([
        backend.execute({ pluginId: BASIC, handlerId: 'echo' }, { onStart: () => void starts.push('queue-full') }),
        backend.execute({ pluginId: BASIC, handlerId: 'echo', unknownField: 1 } as never, { onStart: () => void starts.push('bad request') }),
        backend.execute({ pluginId: BASIC, handlerId: 'echo' }, { timeoutMs: -1, onStart: () => void starts.push('bad option') }),
      ]);
      expect(refusals.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['QUEUE_FULL', 'VALIDATION_ERROR', 'VALIDATION_ERROR']);
      expect((await first).ok).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(starts).toEqual(['first']);
    });
  });
}
