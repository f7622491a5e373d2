import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

// The short version of `npm run soak` (10 000 executions): mixed outcomes on all three
// backends, then shutdown, then a leak audit of the process that ran them.
describe('soak (short)', () => {
  it('600 mixed executions across the backends leak no fd, handle, thread, child process or workspace', () => {
    const run = spawnSync(process.execPath, ['--expose-gc', path.join(repo, 'scripts', 'soak.mjs'), '--executions', '600', '--concurrency', '8', '--json'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '' },
      timeout: 240_000,
    });
    expect(run.status, run.stderr).toBe(0);
    const figures = JSON.parse(run.stdout.trim().split('\n').at(-1)!);
    expect(Object.keys(figures.perBackend)).toEqual(['in-process', 'worker-pool', 'subprocess']);
    for (const counts of Object.values(figures.perBackend)) expect(counts).not.toHaveProperty('skipped');
    expect(figures.executions).toBe(600);
    for (const outcome of ['ok', 'HANDLER_ERROR', 'TIMEOUT', 'ABORTED', 'VALIDATION_ERROR', 'WORKER_CRASHED']) {
      expect(figures.outcomes[outcome], outcome).toBeGreaterThan(0);
    }
    expect(figures).toMatchObject({ leakedFds: 0, leakedHandles: 0, leakedThreads: 0, childProcessesLeft: 0, workspacesLeft: 0 });
    expect(figures.rssGrowthMb).toBeLessThan(30);
  }, 300_000);
});
