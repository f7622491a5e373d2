import type { BackendOptions, IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describeChannelSuite, type ChannelBackendFactory } from './channel-suite.js';

/**
 * The factory of a backend package's exported class. Tests run against each package's dist
 * (`turbo run test` builds it first), so a package that cannot be loaded fails this file with the
 * reason instead of leaving its backend untested.
 */
async function loadBackend(pkg: string, exportName: string): Promise<ChannelBackendFactory> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pkg)) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`Cannot load ${pkg} for the channel suite; build it first (npx turbo run build): ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
  const Backend = mod[exportName];
  if (typeof Backend !== 'function') throw new Error(`${pkg} does not export ${exportName}`);
  return (options: BackendOptions) => new (Backend as new (options: BackendOptions) => IExecutionBackend)(options);
}

describeChannelSuite('in-process', (options) => new InProcessBackend(options));
describeChannelSuite('worker-pool', await loadBackend('@kb-labs/plugin-execution-worker-pool', 'WorkerPoolBackend'));
describeChannelSuite('subprocess', await loadBackend('@kb-labs/plugin-execution-subprocess', 'SubprocessBackend'));
