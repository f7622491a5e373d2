// The queue backend as the bench drives it: `workers` worker processes (each running the echo
// handler on a local backend) and one QueueBackend host in this process. Returns null, saying
// why, while the package is not built.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchEnv, startProcesses } from './raw/processes.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const pluginDir = path.join(here, 'fixtures', 'echo');

async function loadQueuePackage() {
  try {
    const queue = await import('@kb-labs/plugin-execution-queue');
    if (typeof queue.QueueBackend === 'function' && typeof queue.startExecutionWorker === 'function') return queue;
    return 'its dist has no QueueBackend / startExecutionWorker yet';
  } catch (error) {
    if (error?.code === 'ERR_MODULE_NOT_FOUND' && /plugin-execution-queue/.test(error.message)) return 'it is not built (pnpm build)';
    throw error;
  }
}

/**
 * @returns {Promise<{ label: string, call(input: unknown): Promise<unknown>, stop(): Promise<void> } | { skipped: string }>}
 */
export async function startQueueContender({ url, workers = 2, concurrency = 32, inFlight = 64, localBackend = 'in-process' }) {
  const queue = await loadQueuePackage();
  if (typeof queue === 'string') return { skipped: `queue backend not measured: ${queue}` };
  const pool = `bench-${randomBytes(4).toString('hex')}`;
  const workspaceRoot = await mkdtemp(path.join(os.tmpdir(), 'kb-queue-bench-'));
  const env = benchEnv({
    NATS_URL: url,
    POOL: pool,
    LOCAL_BACKEND: localBackend,
    PLUGIN_DIR: pluginDir,
    CONCURRENCY: String(concurrency),
    WORKSPACE_ROOT: workspaceRoot,
  });
  let workerProcesses = [];
  let backend;
  const stop = async () => {
    await backend?.shutdown();
    await Promise.all(workerProcesses.map((w) => w.stop(6_000)));
    await rm(workspaceRoot, { recursive: true, force: true });
  };
  try {
    workerProcesses = await startProcesses(workers, path.join(here, 'fixtures', 'queue-worker.mjs'), env);
    backend = new queue.QueueBackend({ connection: { servers: url }, pool, plugins: [pluginDir], maxConcurrency: inFlight, workspace: false });
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    label: `queue backend (${workers} workers × ${concurrency}, ${localBackend} on the worker)`,
    async call(input) {
      const result = await backend.execute({ pluginId: '@bench/echo', handlerId: 'echo', input });
      if (!result.ok) throw Object.assign(new Error(`queue backend: ${result.error.code}: ${result.error.message}`), { cause: result.error });
      return result.data;
    },
    stop,
  };
}
