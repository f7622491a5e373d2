import { BackendNotInstalledError, type BackendOptions, type IExecutionBackend } from '@kb-labs/plugin-execution-core';

/** The npm package that implements each backend type. */
export const BACKEND_PACKAGES = {
  'in-process': '@kb-labs/plugin-execution-in-process',
  'worker-pool': '@kb-labs/plugin-execution-worker-pool',
  subprocess: '@kb-labs/plugin-execution-subprocess',
  queue: '@kb-labs/plugin-execution-queue',
} as const;

/** The backend types `createExecutionBackend` knows. */
export type BuiltInBackendType = keyof typeof BACKEND_PACKAGES;

type BackendConstructor = new (options: BackendOptions & Record<string, unknown>) => IExecutionBackend;

// Literal specifiers, so bundlers see them, and nothing is loaded until a backend of that type is
// first used: importing this package never loads piscina, cross-spawn, a NATS client or any backend module.
const loaders: Record<BuiltInBackendType, () => Promise<BackendConstructor>> = {
  'in-process': async () => pick(await import('@kb-labs/plugin-execution-in-process'), 'InProcessBackend'),
  'worker-pool': async () => pick(await import('@kb-labs/plugin-execution-worker-pool'), 'WorkerPoolBackend'),
  subprocess: async () => pick(await import('@kb-labs/plugin-execution-subprocess'), 'SubprocessBackend'),
  queue: async () => pick(await import('@kb-labs/plugin-execution-queue'), 'QueueBackend'),
};

type StartExecutionWorker = (typeof import('@kb-labs/plugin-execution-queue'))['startExecutionWorker'];

/** The queue package's `startExecutionWorker`, loaded on first use like a backend (BACKEND_NOT_INSTALLED when it is missing). */
export async function loadStartExecutionWorker(): Promise<StartExecutionWorker> {
  try {
    return (await import('@kb-labs/plugin-execution-queue')).startExecutionWorker;
  } catch (error) {
    throw toLoadError('queue', error);
  }
}

function pick(mod: unknown, name: string): BackendConstructor {
  const Backend = (mod as Record<string, unknown>)[name];
  if (typeof Backend !== 'function') throw new TypeError(`the package does not export ${name}`);
  return Backend as BackendConstructor;
}

const cache = new Map<BuiltInBackendType, Promise<BackendConstructor>>();

/**
 * Load a backend's class once per process. A backend package that cannot be resolved gives
 * BackendNotInstalledError naming the package to add; any other load failure keeps its own
 * message and is attached as `cause`.
 */
export function loadBackend(type: BuiltInBackendType): Promise<BackendConstructor> {
  let loading = cache.get(type);
  if (!loading) {
    loading = loaders[type]().catch((error: unknown) => {
      cache.delete(type);
      throw toLoadError(type, error);
    });
    cache.set(type, loading);
  }
  return loading;
}

function toLoadError(type: BuiltInBackendType, error: unknown): BackendNotInstalledError {
  const pkg = BACKEND_PACKAGES[type];
  const code = (error as NodeJS.ErrnoException)?.code;
  const message = String((error as Error)?.message ?? error);
  const missingItself = (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && message.includes(`'${pkg}'`);
  if (missingItself || ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && message.includes(pkg) && !message.includes(`${pkg}/`))) {
    return new BackendNotInstalledError(`The "${type}" backend needs the package ${pkg}, which is not installed. Add it: ${installCommand(pkg)}`, {
      details: { type, package: pkg, reason: 'not-installed' },
      cause: error,
    });
  }
  return new BackendNotInstalledError(`The "${type}" backend (${pkg}) failed to load: ${message}`, {
    details: { type, package: pkg, reason: 'load-failed' },
    cause: error,
  });
}

/**
 * How to add `pkg` with the package manager running this process (npm, pnpm, yarn and bun set
 * `npm_config_user_agent` for the scripts they run), npm's command otherwise.
 */
export function installCommand(pkg: string, userAgent = process.env.npm_config_user_agent): string {
  const manager = /^(pnpm|yarn|bun)\//.exec(userAgent ?? '')?.[1];
  if (manager === 'pnpm') return `pnpm add ${pkg}`;
  if (manager === 'yarn') return `yarn add ${pkg}`;
  if (manager === 'bun') return `bun add ${pkg}`;
  return `npm install ${pkg}`;
}
