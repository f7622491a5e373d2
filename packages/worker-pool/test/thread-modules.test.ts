import { WorkerPoolBackend } from '@kb-labs/plugin-execution-worker-pool';
import { afterEach, describe, expect, it } from 'vitest';
import { POOL, expectOk, poolPlugin } from './helpers.js';

// A thread starts with core's runner entry only: the backend kit (the host's side, with zod's
// schemas behind it) cost a thread ~15–25 ms of CPU at every start when it came along for three
// timers (session 83, 40 backends each way, one thread each).
describe('what a thread loads', () => {
  let backend: WorkerPoolBackend | undefined;
  afterEach(async () => backend?.shutdown());

  it("neither core's backend kit nor zod, only its runner entry", async () => {
    backend = new WorkerPoolBackend({ plugins: [poolPlugin], maxThreads: 1 });
    const result = await backend.execute<string[]>({ pluginId: POOL, handlerId: 'loaded-modules', input: {} });
    expectOk(result);
    const files = result.data;
    expect(files.some((file) => file.endsWith('dist/worker-entry.cjs'))).toBe(true);
    expect(files.some((file) => file.endsWith('dist/runner.cjs'))).toBe(true);
    expect(files.filter((file) => /backend-kit|host-kit|\/dist\/index\.c?js$|zod/.test(file))).toEqual([]);
  });
});
