export { QueueBackend, type QueueBackendOptions, type QueueRunnerStats } from './host/queue-backend.js';
export { startExecutionWorker, type ExecutionWorker, type ExecutionWorkerOptions, type LocalBackendOptions, type SetByTheWorker } from './runner/start-execution-worker.js';
export type { NatsConnectionOptions } from './shared/connection.js';
export { QueueServerError, type QueueServerProblem } from './shared/server-problem.js';
export { LOCAL_BACKEND_PACKAGES, type LocalBackendType } from './runner/local-backend.js';
