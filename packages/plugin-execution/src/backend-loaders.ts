import { backendLoader, backendLoadError } from '@kb-labs/plugin-execution-core/host-kit';

// Literal specifiers, resolved from this package (which depends on every backend), so bundlers see
// them; nothing is loaded until a backend of that type is first used: importing the umbrella never
// loads piscina, cross-spawn, a NATS client or any backend module.
const imports = {
  'in-process': () => import('@kb-labs/plugin-execution-in-process'),
  'worker-pool': () => import('@kb-labs/plugin-execution-worker-pool'),
  subprocess: () => import('@kb-labs/plugin-execution-subprocess'),
  queue: () => import('@kb-labs/plugin-execution-queue'),
};

/** A backend's class, loaded once per process; BACKEND_NOT_INSTALLED names a missing package. */
export const loadBackend = backendLoader((type) => imports[type]());

type StartExecutionWorker = (typeof import('@kb-labs/plugin-execution-queue'))['startExecutionWorker'];

/** The queue package's `startExecutionWorker`, loaded on first use like a backend (BACKEND_NOT_INSTALLED when it is missing). */
export async function loadStartExecutionWorker(): Promise<StartExecutionWorker> {
  try {
    const { startExecutionWorker } = await imports.queue();
    // A queue package of another version without it: said as one that failed to load, not as a TypeError from the call.
    if (typeof startExecutionWorker !== 'function') throw new TypeError('the package does not export startExecutionWorker (a version of it this package does not know: install matching versions)');
    return startExecutionWorker;
  } catch (error) {
    throw backendLoadError('queue', error);
  }
}
