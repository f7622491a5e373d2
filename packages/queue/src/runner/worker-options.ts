import os from 'node:os';
import { WorkspaceManager, type HostPlatform, type Platform, type PluginSource } from '@kb-labs/plugin-execution-core';
import { validationError } from '@kb-labs/plugin-execution-core/host-kit';
import { BACKEND_OWN_OPTIONS, backendTakes, isBackendOption, isExecuteOptionOrRequestField, lazySchema, nearest, option, parseOptions, pluginSourcesSchema } from '@kb-labs/plugin-execution-core/backend-kit';
import { connectionKeyElsewhere, connectionSchema, type NatsConnectionOptions } from '../shared/connection-options.js';
import { DEFAULT_POOL, DEFAULT_SUBJECT_PREFIX, checkStreamName, poolOption, subjectPrefixOption, subjectToken } from '../shared/subjects.js';
import { DEFAULT_MAX_PAYLOAD_BYTES } from '../host/options.js';
import { LOCAL_BACKEND_PACKAGES, type LocalBackendType } from './local-backend.js';

/** The local backend a worker runs executions on, and its options (as that backend takes them). */
export type LocalBackendOptions = { type: LocalBackendType } & Record<string, unknown>;

export interface ExecutionWorkerOptions {
  /** How to reach NATS (as for the queue backend). @default { servers: 'nats://127.0.0.1:4222' } */
  connection?: NatsConnectionOptions | undefined;
  /** The pool whose tasks this worker takes. @default 'default' */
  pool?: string | undefined;
  /** As the hosts of the pool set it. @default 'kbexec' */
  subjectPrefix?: string | undefined;
  /**
   * Where executions run on this machine, with that backend's options (`maxThreads`,
   * `sandbox`, `permissions` …): its isolation is what a handler gets. `permissions` caps what
   * handlers may be granted here. @default { type: 'worker-pool' }
   */
  backend?: LocalBackendOptions | undefined;
  /** The plugins this worker runs, from its own folders (at least one); hosts must know the same manifests (same versions). */
  plugins: readonly PluginSource[];
  /** Services of the worker itself, used instead of the calling host's for the services they name. @default {} (every call goes to the caller) */
  platform?: HostPlatform | undefined;
  /** Executions at once. @default os.availableParallelism(), and no more than `backend.maxThreads` on worker-pool */
  concurrency?: number | undefined;
  /** The worker's workspaces: `{ root }`, or the OS temp directory. @default a WorkspaceManager in the OS temp directory */
  workspace?: { root: string } | undefined;
  /** This worker's id in the pool (letters, digits, "_" and "-"). @default `<host name>-<pid>-<random>` */
  id?: string | undefined;
  /** How often it sends heartbeats and its presence. @default 1000 */
  heartbeatMs?: number | undefined;
  /** Largest result (encoded) it sends; larger → VALIDATION_ERROR naming the limit. @default 20971520 (20 MiB) */
  maxPayloadBytes?: number | undefined;
}

/**
 * Options every backend takes that the worker sets on its local backend itself: given inside
 * `backend`, they would be overridden without a word, so they are refused there, saying where they go.
 */
const SET_BY_THE_WORKER = {
  workspace: "give it as the worker's own `workspace` option",
  platform: "give it as the worker's own `platform` option",
  plugins: "give them as the worker's own `plugins` option",
  registry: "the worker's own `plugins` option makes it",
  maxConcurrency: "give it as the worker's own `concurrency` option",
  defaultTimeoutMs: "each execution's time limit comes from its caller, with the task",
} as const satisfies Record<string, string>;

/** The options every backend takes that a worker sets itself: refused inside `backend`. */
export type SetByTheWorker = keyof typeof SET_BY_THE_WORKER;

/**
 * A key inside `backend` that is no backend's option but is near one the worker sets (`timeoutMs`,
 * `maxConcurency`) is said here: the local backend would point at that option, which is refused.
 * One of execute()'s (`onLog`) or of a request's (`pluginId`) too: the worker makes those itself;
 * and one of the worker's own (`pool`, `heartbeatMs`), which a local backend would say is the queue backend's.
 */
function namedNearSetByTheWorker(backend: Record<string, unknown>, ctx: { addIssue(issue: { code: 'custom'; path: string[]; message: string }): void }): void {
  for (const key of Object.keys(backend)) {
    if (isExecuteOptionOrRequestField(key)) {
      ctx.addIssue({ code: 'custom', path: [key], message: "not an option of a backend: the worker makes each execution's request and execute() options from its task (what its caller gave)" });
      continue;
    }
    if (key === 'type' || Object.hasOwn(SET_BY_THE_WORKER, key)) continue;
    if (key !== 'backend' && Object.hasOwn(workerOptionsSchema().shape, key)) {
      ctx.addIssue({ code: 'custom', path: [key], message: `the worker's own option, not its local backend's: startExecutionWorker({ ${key}, backend })` });
      continue;
    }
    if (isBackendOption(key)) continue;
    const near = nearest(key, Object.keys(SET_BY_THE_WORKER));
    if (near) ctx.addIssue({ code: 'custom', path: [key], message: `unknown option; "${near}" is near it, and set by the worker: ${SET_BY_THE_WORKER[near as SetByTheWorker]}` });
  }
}

/** Options of a queue backend's host a worker does not take, whose place on a worker is elsewhere. */
const HOST_ONLY: Record<string, string> = {
  maxConcurrency: "the worker's own limit is its `concurrency` option",
  permissions: "a worker's cap is its local backend's: backend: { type, permissions }",
  defaultTimeoutMs: "each execution's time limit comes from its caller, with the task",
  registry: "a worker's plugins are its `plugins` option",
};

/**
 * An option of a local backend of its own (`sandbox`, `minThreads`, `cancelGraceMs`) given to the
 * worker itself: said with where it goes, inside `backend`, not only as unknown.
 */
function localBackendOptionGivenToWorker(key: string): string | undefined {
  const types = Object.hasOwn(BACKEND_OWN_OPTIONS, key) ? BACKEND_OWN_OPTIONS[key as keyof typeof BACKEND_OWN_OPTIONS].filter((type) => type !== 'queue') : [];
  if (types.length === 0) return undefined;
  const named = types.length === 1 ? `the ${types[0]} backend` : `the ${types.join(' and ')} backends`;
  return `an option of ${named} the worker runs executions on, not of the worker: backend: { ${types.length === 1 ? `type: '${types[0]}'` : 'type'}, ${key} }`;
}

/** A queue backend host's option given to a worker (one the worker does not take): said as the host's, not only as unknown. */
function hostOptionGivenToWorker(key: string): string | undefined {
  if (Object.hasOwn(HOST_ONLY, key)) return `an option of the queue backend's host, not of a worker: ${HOST_ONLY[key]}`;
  if (backendTakes('queue', key)) return `an option of the queue backend's host, not of a worker: createExecutionBackend({ type: 'queue', ${key} })`;
  // Misspelt (`maxConcurency`), and near none of the worker's own options: the host's it is near, and where it goes.
  const near = nearest(key, Object.keys(workerOptionsSchema().shape)) ? undefined : nearest(key, Object.keys(HOST_ONLY));
  return near ? `unknown option; did you mean "${near}"? (an option of the queue backend's host, not of a worker: ${HOST_ONLY[near]!})` : undefined;
}

const workerOptionsSchema = lazySchema((z) =>
  z.object({
    connection: connectionSchema().optional(),
    pool: poolOption().optional(),
    subjectPrefix: subjectPrefixOption().optional(),
    backend: z
      .looseObject({
        type: option.oneOf(Object.keys(LOCAL_BACKEND_PACKAGES) as [LocalBackendType, ...LocalBackendType[]]),
        ...Object.fromEntries(Object.entries(SET_BY_THE_WORKER).map(([key, where]) => [key, z.never({ error: `set by the worker: ${where}` }).optional()])),
      })
      .superRefine(namedNearSetByTheWorker)
      .optional(),
    // A worker without plugins can run nothing: every task it took would be handed back, then fail.
    plugins: pluginSourcesSchema().min(1, { error: 'must name at least one plugin folder: a worker without plugins can run nothing' }),
    platform: z.record(z.string(), z.unknown(), { error: 'must be an object of services' }).optional(),
    concurrency: option.int(1, 10_000).optional(),
    workspace: z.object({ root: option.text() }).strict().optional(),
    id: option
      .text()
      .refine((id) => id === '' || subjectToken(id) === id, { error: (issue) => `must be letters, digits, "_" and "-" (64 at most), got ${JSON.stringify(issue.input)}` })
      .optional(),
    heartbeatMs: option.int(50, 60_000).optional(),
    maxPayloadBytes: option.int(1024, 1024 * 1024 * 1024).optional(),
  }),
);

export interface ResolvedWorkerOptions {
  connection: NatsConnectionOptions;
  pool: string;
  subjectPrefix: string;
  backend: LocalBackendOptions;
  plugins: readonly PluginSource[];
  platform: Platform | undefined;
  concurrency: number;
  workspace: { root: string } | undefined;
  id: string;
  heartbeatMs: number;
  maxPayloadBytes: number;
}

export function resolveWorkerOptions(options: ExecutionWorkerOptions): ResolvedWorkerOptions {
  const o = parseOptions(workerOptionsSchema(), options, 'execution worker options', false, (key) => hostOptionGivenToWorker(key) ?? localBackendOptionGivenToWorker(key) ?? connectionKeyElsewhere(key));
  // The host name cut, not the pid and random part: two workers of a machine with a long host name differ.
  const own = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const id = o.id ?? `${subjectToken(os.hostname()).slice(0, 63 - own.length)}-${own}`;
  const resolved: ResolvedWorkerOptions = {
    connection: (o.connection ?? {}) as NatsConnectionOptions,
    pool: o.pool ?? DEFAULT_POOL,
    subjectPrefix: o.subjectPrefix ?? DEFAULT_SUBJECT_PREFIX,
    backend: (options.backend ?? { type: 'worker-pool' }) as LocalBackendOptions,
    plugins: o.plugins as PluginSource[],
    platform: options.platform,
    concurrency: o.concurrency ?? defaultConcurrency(options.backend),
    workspace: o.workspace,
    id,
    heartbeatMs: o.heartbeatMs ?? 1000,
    maxPayloadBytes: o.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
  };
  checkStreamName(resolved.subjectPrefix, resolved.pool, 'execution worker options');
  return resolved;
}

/**
 * One execution per CPU, but no more than a worker-pool backend's threads: the worker gives its
 * concurrency to its backend as `maxConcurrency`, which that backend refuses above `maxThreads`.
 */
function defaultConcurrency(backend: ExecutionWorkerOptions['backend']): number {
  const threads = backend?.type === 'worker-pool' ? backend.maxThreads : undefined;
  // One that is no thread count is left for the backend to refuse, naming it.
  return typeof threads === 'number' && Number.isInteger(threads) && threads > 0 ? Math.min(threads, os.availableParallelism()) : os.availableParallelism();
}

/**
 * Refuses a workspace root where no workspace can be made (a file, another user's folder): such a
 * worker would join the pool, fail each task it took at once, and so take most of them.
 */
export async function refuseUnusableWorkspaceRoot(o: ResolvedWorkerOptions): Promise<void> {
  const manager = o.workspace ? new WorkspaceManager(o.workspace) : WorkspaceManager.default();
  const problem = await manager.rootProblem();
  if (problem) throw validationError('Invalid execution worker options', [{ path: 'workspace.root', message: `no workspace can be made there: ${problem}` }]);
}
