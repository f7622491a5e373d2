export { WorkerPoolBackend } from './worker-pool-backend.js';
export type { WorkerPoolBackendOptions } from './options.js';
export type { WorkerPoolRunnerStats } from './pool-contract.js';
export type { WorkerCrashDetails } from './crash.js';
