import { randomUUID } from 'node:crypto';
import {
  ShuttingDownError,
  ValidationError,
  toHandlerError,
  type BackendHealth,
  type BackendOptions,
  type BackendStats,
  type BackendType,
  type ExecuteOptions,
  type ExecutionError,
  type ExecutionRequest,
  type ExecutionResult,
  type IExecutionBackend,
  type PluginSource,
  type RegisteredPlugin,
  type ShutdownOptions,
} from '@kb-labs/plugin-execution-core';
import { BACKEND_PACKAGES, loadBackend } from './backend-loaders.js';

/**
 * Options of `createExecutionBackend`: the common BackendOptions plus `type`, plus whatever the
 * chosen backend accepts (e.g. `maxThreads` for worker-pool, `prespawn` for subprocess); those are
 * validated by the backend when it loads, and a problem then fails every execution with VALIDATION_ERROR.
 */
export type CreateExecutionBackendOptions = BackendOptions & {
  /** Where handlers run. @default 'in-process' */
  type?: BackendType;
  [option: string]: unknown;
};

/** What `createExecutionBackend` returns: the backend interface plus plugin registration. */
export interface LazyExecutionBackend extends IExecutionBackend {
  /** Add a plugin after creation; rejects with ValidationError for a bad manifest. */
  registerPlugin(source: PluginSource): Promise<RegisteredPlugin>;
  /** Load the backend package now instead of on first use (e.g. at host start-up). */
  ready(): Promise<void>;
}

/**
 * Create a backend of `type`. Returns at once; the backend package is imported on first use
 * (execute, stats, health, registerPlugin or ready). Throws ValidationError synchronously only for
 * an unknown `type` or a non-object options argument — a misuse of the API.
 */
export function createExecutionBackend(options: CreateExecutionBackendOptions = {}): LazyExecutionBackend {
  if (options === null || typeof options !== 'object') {
    throw new ValidationError(`createExecutionBackend() needs an options object, got ${options === null ? 'null' : typeof options}`);
  }
  const type = options.type ?? 'in-process';
  if (!Object.hasOwn(BACKEND_PACKAGES, type)) {
    throw new ValidationError(
      `Invalid backend options:\n  - type: must be one of ${Object.keys(BACKEND_PACKAGES).map((t) => `"${t}"`).join(', ')}, got ${JSON.stringify(type)}`,
      { details: { issues: [{ path: 'type', message: 'unknown backend type' }] } },
    );
  }
  return new LazyBackend(type, options);
}

interface Loadable extends IExecutionBackend {
  registerPlugin?(source: PluginSource): Promise<RegisteredPlugin>;
}

class LazyBackend implements LazyExecutionBackend {
  readonly type: BackendType;
  readonly #options: CreateExecutionBackendOptions;
  #loading: Promise<Loadable> | undefined;
  #backend: Loadable | undefined;
  #shutdown: Promise<void> | undefined;

  constructor(type: BackendType, options: CreateExecutionBackendOptions) {
    this.type = type;
    const { type: _type, ...rest } = options;
    this.#options = rest;
  }

  #load(): Promise<Loadable> {
    this.#loading ??= loadBackend(this.type).then((Backend) => {
      this.#backend = new Backend(this.#options);
      return this.#backend;
    });
    return this.#loading;
  }

  async ready(): Promise<void> {
    await this.#load();
  }

  execute<T = unknown>(request: ExecutionRequest, options?: ExecuteOptions): Promise<ExecutionResult<T>> {
    // Hot path: once loaded, straight through.
    if (this.#backend && !this.#shutdown) return this.#backend.execute<T>(request, options);
    return this.#executeSlow<T>(request, options);
  }

  async #executeSlow<T>(request: ExecutionRequest, options?: ExecuteOptions): Promise<ExecutionResult<T>> {
    const startedAt = Date.now();
    const t0 = performance.now();
    if (this.#shutdown) {
      return this.#failure(request, new ShuttingDownError(`The ${this.type} backend is shut down; it takes no new executions`), startedAt, t0);
    }
    let backend: Loadable;
    try {
      backend = await this.#load();
    } catch (error) {
      return this.#failure(request, toHandlerError(error), startedAt, t0);
    }
    return backend.execute<T>(request, options);
  }

  #failure<T>(request: ExecutionRequest, error: ExecutionError, startedAt: number, t0: number): ExecutionResult<T> {
    const r = (request ?? {}) as Partial<ExecutionRequest>;
    return {
      ok: false,
      error,
      meta: {
        executionId: typeof r.executionId === 'string' ? r.executionId : randomUUID(),
        backend: this.type,
        pluginId: typeof r.pluginId === 'string' ? r.pluginId : '',
        handlerId: typeof r.handlerId === 'string' ? r.handlerId : '',
        startedAt,
        durationMs: performance.now() - t0,
        queueWaitMs: 0,
        runMs: 0,
        timeoutMs: 0,
        artifacts: [],
      },
    };
  }

  async registerPlugin(source: PluginSource): Promise<RegisteredPlugin> {
    if (this.#shutdown) throw new ShuttingDownError();
    const backend = await this.#load();
    if (typeof backend.registerPlugin !== 'function') throw new ValidationError(`The ${this.type} backend cannot register plugins after creation`);
    return backend.registerPlugin(source);
  }

  async stats(): Promise<BackendStats> {
    return (await this.#load()).stats();
  }

  async health(): Promise<BackendHealth> {
    try {
      return await (await this.#load()).health();
    } catch (error) {
      return {
        ok: false,
        backend: this.type,
        state: this.#shutdown ? 'closed' : 'starting',
        problems: [String((error as Error)?.message ?? error)],
        active: 0,
        queued: 0,
        isolation: { requested: 'unknown', active: 'unknown', layers: [], reason: 'the backend could not be loaded' },
      };
    }
  }

  shutdown(options?: ShutdownOptions): Promise<void> {
    this.#shutdown ??= (async () => {
      // Never loaded: nothing to stop, and nothing should be loaded just to stop it.
      if (!this.#loading) return;
      const backend = await this.#loading.catch(() => undefined);
      await backend?.shutdown(options);
    })();
    return this.#shutdown;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}
