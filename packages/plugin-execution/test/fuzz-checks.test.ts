import { spawn } from 'node:child_process';
import { runFuzzSeed, type FuzzBackendFactory } from '@kb-labs/plugin-execution-conformance';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';

// The fuzz driver's checks are not vacuous: a backend that breaks an invariant is caught.
describe('fuzz checks', () => {
  it('catch a success for a plugin that was not registered', async () => {
    const lying: FuzzBackendFactory = (options) => {
      const backend = new InProcessBackend(options);
      const execute = backend.execute.bind(backend);
      backend.execute = (async (request: Parameters<typeof execute>[0], executeOptions: Parameters<typeof execute>[1]) => {
        const result = await execute(request, executeOptions);
        if (result.ok || result.error.code !== 'HANDLER_NOT_FOUND') return result;
        return { ok: true, data: { tag: (request.input as { tag: string }).tag }, meta: result.meta };
      }) as typeof backend.execute;
      return backend;
    };
    const problems: string[] = [];
    for (const seed of [1, 2, 3, 4, 5]) problems.push(...(await runFuzzSeed(seed, lying, { isolatesCrashes: false })).problems);
    expect(problems.some((problem) => problem.includes('succeeded, for a plugin not registered when it was called'))).toBe(true);
  }, 60_000);

  it('catch a child process left after shutdown()', async () => {
    let left: ReturnType<typeof spawn> | undefined;
    const leaking: FuzzBackendFactory = (options) => {
      const backend = new InProcessBackend(options);
      const shutdown = backend.shutdown.bind(backend);
      let once: Promise<void> | undefined;
      backend.shutdown = (shutdownOptions) =>
        (once ??= shutdown(shutdownOptions).then(() => {
          left = spawn('sleep', ['30'], { stdio: 'ignore' });
        }));
      return backend;
    };
    try {
      const { problems } = await runFuzzSeed(1, leaking, { isolatesCrashes: false });
      expect(problems.find((problem) => problem.startsWith('child processes left:'))).toContain('(sleep)');
    } finally {
      left?.kill('SIGKILL');
    }
  }, 60_000);
});
