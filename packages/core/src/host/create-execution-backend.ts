import { backendLoader, importBackendPackage } from './backend-packages.js';
import { lazyExecutionBackend, type ExecutionBackendOptions, type LazyExecutionBackend } from './lazy-backend.js';

const loadBackendClass = backendLoader(importBackendPackage);

/**
 * Create a backend of `type` (default `in-process`) from the backend packages installed beside
 * core: returns at once, and imports the package on first use. A type whose package is not
 * installed gives BACKEND_NOT_INSTALLED, naming the package and the command that adds it, on
 * every execution and in health(). The umbrella package `@kb-labs/plugin-execution` exports the
 * same function with options typed per backend.
 */
export function createExecutionBackend(options?: ExecutionBackendOptions): LazyExecutionBackend {
  return lazyExecutionBackend(options, loadBackendClass);
}
