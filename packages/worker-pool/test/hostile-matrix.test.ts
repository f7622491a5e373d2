import { describeHostileMatrix } from '@kb-labs/plugin-execution-conformance/hostile-matrix';
import { WorkerPoolBackend } from '@kb-labs/plugin-execution-worker-pool';

describeHostileMatrix('worker-pool', (options) => new WorkerPoolBackend({ maxThreads: 2, ...options }));
