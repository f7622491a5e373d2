import type { ResolvedPoolOptions } from './options.js';
import type { WorkerPoolRunnerStats } from './pool-contract.js';
import type { PoolThread } from './pool-thread.js';
import type { Lane } from './thread-lane.js';

/** What the pool has counted since it began (started, ended and why …), besides what it is now. */
export type PoolCounts = Omit<WorkerPoolRunnerStats, 'threads' | 'busy' | 'idle' | 'startingWait' | 'minThreads' | 'maxThreads' | 'lanes'>;

/** `stats().runners`: the pool's threads and lanes as they are now, and its counts. */
export function poolStats(lanes: Iterable<Lane>, threads: ReadonlySet<PoolThread<Lane>>, options: ResolvedPoolOptions, counts: PoolCounts): WorkerPoolRunnerStats {
  const byLane: WorkerPoolRunnerStats['lanes'] = {};
  let [busy, idle, waiting] = [0, 0, 0];
  for (const lane of lanes) {
    let laneBusy = 0;
    for (const thread of threads) if (thread.lane === lane && thread.execution) laneBusy++;
    busy += laneBusy;
    idle += lane.idle.length;
    waiting += lane.waiting.length;
    byLane[lane.label] = { threads: lane.threads, busy: laneBusy, ...(lane.heapLimitMb !== undefined ? { heapLimitMb: lane.heapLimitMb } : {}) };
  }
  const { minThreads, maxThreads } = options;
  return { threads: threads.size, busy, idle, startingWait: waiting, minThreads, maxThreads, ...counts, lanes: byLane };
}
