export { InProcessBackend, type InProcessBackendOptions } from './in-process-backend.js';
