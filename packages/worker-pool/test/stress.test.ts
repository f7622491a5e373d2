import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { POOL, grown, osThreads, resources, runners, useBackends, waitFor } from './helpers.js';

type Kind = 'ok' | 'throws' | 'stray-rejection' | 'exit' | 'throw-in-timer' | 'loop' | 'ignores-abort' | 'honours-abort';

/** How many of each kind in every 400 executions: mostly plain ones, with every way an execution can end among them (~4 % end their thread). */
const MIX: Record<Kind, number> = { ok: 360, throws: 12, 'stray-rejection': 4, exit: 3, 'throw-in-timer': 3, loop: 2, 'ignores-abort': 4, 'honours-abort': 12 };
const EXPECTED: Record<Kind, string> = {
  ok: 'ok',
  throws: 'HANDLER_ERROR',
  // Answers, then its thread dies of what it left behind: the answer stands.
  'stray-rejection': 'ok',
  exit: 'WORKER_CRASHED',
  'throw-in-timer': 'WORKER_CRASHED',
  loop: 'TIMEOUT',
  'ignores-abort': 'ABORTED',
  'honours-abort': 'ABORTED',
};
/** Must run exactly once; the others are stopped by a timeout or an abort, possibly before they began, so at most once. */
const RUNS_ONCE = new Set<Kind>(['ok', 'throws', 'stray-rejection', 'exit', 'throw-in-timer']);
const TOTAL = 10_000;
const IN_FLIGHT = 16;

/** The mix repeated to TOTAL, in a fixed shuffled order (the same on every run). */
function plan(): Kind[] {
  const kinds: Kind[] = [];
  while (kinds.length < TOTAL) for (const [kind, n] of Object.entries(MIX) as Array<[Kind, number]>) for (let i = 0; i < n; i++) kinds.push(kind);
  let seed = 12;
  for (let i = kinds.length - 1; i > 0; i--) {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = seed % (i + 1);
    [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
  }
  return kinds.slice(0, TOTAL);
}

describe('worker-pool: stress', () => {
  const backends = useBackends();

  it(`${TOTAL} executions mixed with crashes, timeouts and aborts on 2 threads: each settles once as its kind says, each handler runs at most once, nothing is left`, async () => {
    const marks = await mkdtemp(path.join(os.tmpdir(), 'kb-wp-stress-'));
    try {
      const threadsBefore = osThreads();
      const resourcesBefore = resources();
      const backend = backends.make({ maxThreads: 2, minThreads: 2, cancelGraceMs: 25 });
      const kinds = plan();
      const settled = new Array<number>(TOTAL).fill(0);
      const results = new Array<ExecutionResult | undefined>(TOTAL);
      let next = 0;
      await Promise.all(
        Array.from({ length: IN_FLIGHT }, async () => {
          while (next < TOTAL) {
            const i = next++;
            const kind = kinds[i]!;
            const aborts = kind === 'ignores-abort' || kind === 'honours-abort';
            const controller = aborts ? new AbortController() : undefined;
            const pending = backend.execute(
              { pluginId: POOL, handlerId: 'stress', input: { dir: marks, name: String(i), kind } },
              { ...(controller ? { signal: controller.signal } : {}), ...(kind === 'loop' ? { timeoutMs: 150 } : {}) },
            );
            // At once, or after a few ms: while queued, waiting for a thread, or running.
            if (controller) setTimeout(() => controller.abort(), i % 4);
            results[i] = await pending.then((result) => {
              settled[i]!++;
              return result;
            });
          }
        }),
      );

      expect(settled.every((n) => n === 1)).toBe(true);
      const wrong = results.flatMap((result, i) => {
        const kind = kinds[i]!;
        const code = result!.ok ? 'ok' : result!.error.code;
        const data = result!.ok ? result!.data : undefined;
        return code === EXPECTED[kind] && (code !== 'ok' || data === String(i)) ? [] : [{ i, kind, code, data }];
      });
      expect(wrong).toEqual([]);

      const runs = new Map<string, number>();
      for (const name of await readdir(marks)) runs.set(name, (await readFile(path.join(marks, name), 'utf8')).length);
      const miscounted = kinds.flatMap((kind, i) => {
        const n = runs.get(String(i)) ?? 0;
        return (RUNS_ONCE.has(kind) ? n === 1 : n <= 1) ? [] : [{ i, kind, runs: n }];
      });
      expect(miscounted).toEqual([]);

      const stats = await backend.stats();
      expect(stats).toMatchObject({ active: 0, queued: 0, total: TOTAL });
      expect(await runners(backend)).toMatchObject({ busy: 0, startingWait: 0 });

      await backend.shutdown();
      expect(await runners(backend)).toMatchObject({ threads: 0, busy: 0 });
      expect(grown(resourcesBefore, resources())).toEqual([]);
      if (threadsBefore !== undefined) await waitFor(() => osThreads()! <= threadsBefore);
    } finally {
      await rm(marks, { recursive: true, force: true });
    }
    // 62 s here beside another test run, past 180 s with a third of a core.
  }, 360_000);
});
