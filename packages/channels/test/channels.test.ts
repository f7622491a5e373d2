import type { BackendOptions, IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describeChannelSuite, type ChannelBackendFactory } from './channel-suite.js';

describeChannelSuite('in-process', (options) => new InProcessBackend(options));

/**
 * The worker-pool and subprocess packages are built by their own tasks; until their dist exists the
 * import fails and the suite is skipped with the reason printed. Any other load error is a failure.
 */
async function load(pkg: string, exportName: string): Promise<{ create?: ChannelBackendFactory; reason?: string }> {
  try {
    const mod = (await import(pkg)) as Record<string, new (options: BackendOptions) => IExecutionBackend>;
    const Backend = mod[exportName];
    if (typeof Backend !== 'function') return { reason: `${pkg} does not export ${exportName} yet` };
    return { create: (options) => new Backend(options) };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND' || /Failed to (load|resolve)/.test(String(error))) {
      return { reason: `${pkg} is not built (no dist): ${(error as Error).message.split('\n')[0]}` };
    }
    throw error;
  }
}

const workerPool = await load('@kb-labs/plugin-execution-worker-pool', 'WorkerPoolBackend');
describeChannelSuite('worker-pool', workerPool.create, workerPool.reason);

const subprocess = await load('@kb-labs/plugin-execution-subprocess', 'SubprocessBackend');
describeChannelSuite('subprocess', subprocess.create, subprocess.reason);
