export { QueueBackend, type QueueBackendOptions, type QueueRunnerStats } from './host/queue-backend.js';
export { startExecutionWorker, type ExecutionWorker, type ExecutionWorkerOptions, type LocalBackendOptions } from './runner/start-execution-worker.js';
export { QueueServerError, type NatsConnectionOptions, type QueueServerProblem } from './shared/connection.js';
export { LOCAL_BACKEND_PACKAGES, type LocalBackendType } from './runner/local-backend.js';
