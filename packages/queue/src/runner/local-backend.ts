import { mergePermissions, type BackendOptions, type IExecutionBackend, type PermissionSpec, type PluginRegistry } from '@kb-labs/plugin-execution-core';
import { backendLoader } from '@kb-labs/plugin-execution-core/backend-kit';
import { asWorkerOptionsError } from './backend-refusal.js';

/** The backends a worker can run executions on, and their packages (optional peer dependencies). */
export const LOCAL_BACKEND_PACKAGES = {
  'in-process': '@kb-labs/plugin-execution-in-process',
  'worker-pool': '@kb-labs/plugin-execution-worker-pool',
  subprocess: '@kb-labs/plugin-execution-subprocess',
} as const;

export type LocalBackendType = keyof typeof LOCAL_BACKEND_PACKAGES;

type LocalBackendClass = new (options: BackendOptions & Record<string, unknown>) => IExecutionBackend & { registry: PluginRegistry };

// Imported here, not through the umbrella (which depends on this package): literal specifiers,
// loaded only for the type a worker runs.
const imports: Record<LocalBackendType, () => Promise<unknown>> = {
  'in-process': () => import('@kb-labs/plugin-execution-in-process'),
  'worker-pool': () => import('@kb-labs/plugin-execution-worker-pool'),
  subprocess: () => import('@kb-labs/plugin-execution-subprocess'),
};

/** The class of a local backend; its package missing is BACKEND_NOT_INSTALLED naming it and the command that adds it. */
export const loadLocalBackend = backendLoader((type) => imports[type as LocalBackendType]()) as (type: LocalBackendType) => Promise<LocalBackendClass>;

/**
 * What the worker's local backend grants when its operator sets nothing: everything its own
 * plugins declare. The caller's host already checked the grant before sending the task (its
 * `permissions` or the request's); at run time each handler still gets only what it declared.
 */
export function declaredByAll(registry: PluginRegistry): PermissionSpec {
  let grant: PermissionSpec = {};
  for (const plugin of registry.list()) {
    for (const handlerId of Object.keys(plugin.manifest.handlers)) {
      const need = registry.resolve(plugin.id, handlerId).permissions;
      const merged = mergePermissions(grant, need);
      // Booleans are overridden by a merge; here any handler's need counts.
      if (grant.network || need.network) merged.network = true;
      if (grant.childProcess || need.childProcess) merged.childProcess = true;
      grant = merged;
    }
  }
  return grant;
}

/**
 * The worker's local backends, of `backend.type` with the operator's options, the worker's registry
 * and concurrency, and declaredByAll for a grant unset: one with workspaces, and one without (for
 * the executions whose callers want none), each made on first use. The first is made here, before
 * the worker connects: its constructor checks the operator's options, and a worker given a misspelt
 * one is refused at once, naming it as given (`backend.prespwn`), with no server needed.
 */
export async function localBackends(backend: { type: LocalBackendType } & Record<string, unknown>, registry: PluginRegistry, shared: { workspace: BackendOptions['workspace']; concurrency: number }): Promise<LocalBackends> {
  const Backend = await loadLocalBackend(backend.type);
  const { type, ...options } = backend;
  const permissions = (options.permissions as PermissionSpec | undefined) ?? declaredByAll(registry);
  const backends = new LocalBackends((workspace) => new Backend({ ...options, registry, workspace: workspace ? shared.workspace : false, permissions, maxConcurrency: shared.concurrency }));
  try {
    backends.get(true);
  } catch (error) {
    throw asWorkerOptionsError(error, type);
  }
  return backends;
}

export class LocalBackends {
  readonly #made = new Map<boolean, IExecutionBackend>();
  readonly #make: (workspace: boolean) => IExecutionBackend;

  constructor(make: (workspace: boolean) => IExecutionBackend) {
    this.#make = make;
  }

  /** The one with workspaces (`workspace`) or the one without, made now if not yet. */
  get(workspace: boolean): IExecutionBackend {
    let backend = this.#made.get(workspace);
    if (!backend) this.#made.set(workspace, (backend = this.#make(workspace)));
    return backend;
  }

  /** Every one made so far shut down; settles (never rejects) once they all are. */
  async shutdown(timeoutMs: number): Promise<void> {
    await Promise.allSettled([...this.#made.values()].map((backend) => backend.shutdown({ timeoutMs })));
  }
}
