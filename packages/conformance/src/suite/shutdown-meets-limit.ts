import { describe, expect, it } from 'vitest';
import { expectOk } from '../expect-result.js';
import { BASIC } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';

const LIMIT_MS = 300;

/**
 * `shutdown({ timeoutMs })` whose wait runs out as a running execution's own time limit does (a
 * few ms either side), with its caller's abort landing then too or not: the first of them is
 * its result (TIMEOUT, SHUTTING_DOWN or ABORTED, `phase` saying whether it had started, as
 * `onStart` did), it settles once and before `shutdown()` resolves, and nothing is left (the
 * suite checks the workspace root after each test).
 */
export function describeShutdownMeetsLimit(suite: SuiteContext): void {
  describe('shutdown at the time limit', () => {
    for (const abort of ['no abort', 'abort in the same turn'] as const) {
      it(`shutdown's timeoutMs and the execution's time limit run out together, ${abort}: one ending, settled before shutdown() resolves`, async () => {
        for (const skewMs of [-2, 0, 2]) {
          const backend = suite.make();
          expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'warm' }));
          const controller = new AbortController();
          const order: string[] = [];
          let starts = 0;
          const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 30_000 } }, { timeoutMs: LIMIT_MS, signal: controller.signal, onStart: () => void starts++ });
          const settled = running.then((result) => (order.push('result'), result));
          const shutdown = backend.shutdown({ timeoutMs: LIMIT_MS + skewMs }).then(() => void order.push('shutdown'));
          if (abort !== 'no abort') {
            setTimeout(() => controller.abort(), LIMIT_MS + skewMs);
          }
          const [result] = await Promise.all([settled, shutdown]);
          expect(result.ok).toBe(false);
          const error = result.ok ? undefined : result.error;
          const phase = (error?.details as { phase?: string } | undefined)?.phase;
          const codes = abort === 'no abort' ? ['TIMEOUT', 'SHUTTING_DOWN'] : ['TIMEOUT', 'SHUTTING_DOWN', 'ABORTED'];
          expect({ skewMs, code: codes.includes(error!.code) ? 'one of them' : error!.code, startsFitPhase: phase === 'queued' ? starts === 0 : starts === 1 }).toEqual({ skewMs, code: 'one of them', startsFitPhase: true });
          expect(order).toEqual(['result', 'shutdown']);
          const stats = await backend.stats();
          expect({ state: stats.state, active: stats.active, queued: stats.queued }).toEqual({ state: 'closed', active: 0, queued: 0 });
        }
      }, 60_000);
    }
  });
}
