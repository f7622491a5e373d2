import type { RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';
import { describe, expect, it } from 'vitest';
import { crashError } from '../src/crash.js';
import type { PoolThread } from '../src/pool-thread.js';

const task = { pluginId: '@wp/pool', handlerId: 'echo' } as RunnerTask;

/** What crashError reads of a thread that is gone, as the pool leaves it. */
function goneThread(fields: Partial<PoolThread>): PoolThread {
  return { id: 7, exitCode: 1, reports: [], error: undefined, protocolError: undefined, endedBy: undefined, ...fields } as PoolThread;
}

describe('the WORKER_CRASHED a gone thread gives its execution', () => {
  it('a thread the pool ended because it had not begun the execution says so, not that it exited by itself', () => {
    const error = crashError(goneThread({ endedBy: { kind: 'retired', reason: 'left-busy' } }), 3, task, undefined);
    expect(error.code).toBe('WORKER_CRASHED');
    expect(error.message).toBe(
      'Worker thread 7 running handler "echo" of plugin "@wp/pool" did not run it: the pool ended it: it had not begun the execution a second after it was handed over, ' +
        'kept busy by what an earlier handler on it left running (so had the threads it was handed to before)',
    );
    expect(error.details).toMatchObject({ reason: 'exit', runnerId: 'thread:7', exitCode: 1 });
  });

  it('a thread that exited by itself still says it exited', () => {
    const error = crashError(goneThread({}), 3, task, undefined);
    expect(error.message).toBe('Worker thread 7 running handler "echo" of plugin "@wp/pool" exited with code 1 before the handler finished');
  });

  it('a thread that ran out of memory is said so, even when its channel closed long enough before its exit to be taken for plugin code closing it (a heap of gigabytes takes seconds to tear down)', () => {
    const outOfMemory = Object.assign(new Error('Worker terminated due to reaching memory limit: JS heap out of memory'), { code: 'ERR_WORKER_OUT_OF_MEMORY' });
    const protocolError = 'its channel to the host was closed by plugin code that ran on it (this execution or an earlier one), so nothing it sends can arrive';
    const error = crashError(goneThread({ error: outOfMemory, protocolError, heapLimitMb: 2048 }), 3, task, undefined);
    expect(error.message).toBe('Worker thread 7 running handler "echo" of plugin "@wp/pool" ran out of memory (heap limit 2048 MB)');
    expect(error.details).toMatchObject({ reason: 'oom', heapLimitMb: 2048 });
  });
});

