import type { BackendOptions } from './backend-options.js';
import type { BuiltInBackendType } from './backend-packages.js';
import { EXECUTE_OPTIONS, REQUEST_FIELDS } from './request-fields.js';

/**
 * The options only some backend types take, by name: an option given to a backend that does not
 * take it is said with the ones that do (`prespawn` on worker-pool: "an option of the subprocess
 * backend"), not only as unknown. Kept equal to the backends' own option types by a type test
 * (packages/plugin-execution/test/types).
 */
export const BACKEND_OWN_OPTIONS = Object.freeze({
  maxThreads: ['worker-pool'],
  minThreads: ['worker-pool'],
  idleTimeoutMs: ['worker-pool'],
  resourceLimits: ['worker-pool'],
  maxExecutionsPerThread: ['worker-pool'],
  env: ['worker-pool'],
  execArgv: ['worker-pool'],
  cancelGraceMs: ['worker-pool', 'subprocess'],
  maxOutputPerStream: ['worker-pool', 'subprocess'],
  maxLogLineLength: ['worker-pool', 'subprocess'],
  prespawn: ['subprocess'],
  killGraceMs: ['subprocess'],
  handshakeTimeoutMs: ['subprocess'],
  maxFrameBytes: ['subprocess'],
  baseEnv: ['subprocess'],
  enforcePermissions: ['subprocess'],
  allowRead: ['subprocess'],
  readDependencyFolders: ['subprocess'],
  defaultMemoryMb: ['subprocess'],
  execPath: ['subprocess'],
  sandbox: ['subprocess'],
  bwrapPath: ['subprocess'],
  sandboxUser: ['subprocess'],
  sandboxTmpMb: ['subprocess'],
  connection: ['queue'],
  pool: ['queue'],
  subjectPrefix: ['queue'],
  queueBound: ['queue'],
  heartbeatMs: ['queue'],
  workerLostMs: ['queue'],
  maxPayloadBytes: ['queue'],
  streamStorage: ['queue'],
  streamReplicas: ['queue'],
} as const satisfies Record<string, readonly BuiltInBackendType[]>);

/** The backend types that take option `key` of their own; undefined for one none takes alone. */
function typesTaking(key: string): readonly string[] | undefined {
  return Object.hasOwn(BACKEND_OWN_OPTIONS, key) ? BACKEND_OWN_OPTIONS[key as keyof typeof BACKEND_OWN_OPTIONS] : undefined;
}

/** "; it is an option of the subprocess backend", for an option `key` of other backend types than this one; else undefined. */
export function optionOfOtherBackends(key: string): string | undefined {
  const types = typesTaking(key);
  if (!types) return undefined;
  const named = types.length === 1 ? `the ${types[0]} backend` : `the ${types.slice(0, -1).join(', ')} and ${types.at(-1)} backends`;
  return `an option of ${named}`;
}

/** The options every backend takes (BackendOptions): a record, so that the compiler keeps it equal to the type. */
const COMMON_OPTIONS: Record<keyof BackendOptions, true> = {
  platform: true,
  plugins: true,
  registry: true,
  workspace: true,
  permissions: true,
  defaultTimeoutMs: true,
  maxConcurrency: true,
  maxQueue: true,
  perPluginConcurrency: true,
  watch: true,
};

/** Every option name some backend type takes (every backend's, and each backend's own). */
export const BACKEND_OPTION_NAMES: readonly string[] = Object.freeze([...Object.keys(COMMON_OPTIONS), ...Object.keys(BACKEND_OWN_OPTIONS)]);

/** Whether a backend of `type` takes option `key` (every backend's, or one of its own). */
export function backendTakes(type: BuiltInBackendType, key: string): boolean {
  return Object.hasOwn(COMMON_OPTIONS, key) || (typesTaking(key)?.includes(type) ?? false);
}

/** Whether `key` is an option of some backend type (every backend's, or some backend's own). */
export function isBackendOption(key: string): boolean {
  return Object.hasOwn(COMMON_OPTIONS, key) || Object.hasOwn(BACKEND_OWN_OPTIONS, key);
}

/**
 * Where a key given to a backend's options belongs when it is one of execute()'s or a request's,
 * said as a whole message ("not an option of the backend; it is an option of execute() …"), or
 * undefined. A host that puts `onLog` or `pluginId` beside `type` learns where it goes, not only
 * that it is unknown. (One of another backend type's: optionOfOtherBackends.)
 */
export function backendKeyOfExecute(key: string): string | undefined {
  if (EXECUTE_OPTIONS.includes(key)) return `not an option of the backend; it is an option of execute(), for one execution: backend.execute(request, { ${key} })`;
  if (REQUEST_FIELDS.has(key)) return `not an option of the backend; it is a field of the request: backend.execute({ pluginId, handlerId, input })`;
  // A handler's field of the manifest, which a host may look for among a backend's options.
  if (key === 'memoryMb') {
    return "not an option of the backend; it is a handler's, in its manifest (handlers.<id>.memoryMb in kb.plugin.json). A backend's default heap cap: resourceLimits.maxOldGenerationSizeMb (worker-pool) or defaultMemoryMb (subprocess)";
  }
  return undefined;
}

/** Whether `key` is one of execute()'s options or a field of its request: never a backend's option. */
export function isExecuteOptionOrRequestField(key: string): boolean {
  return EXECUTE_OPTIONS.includes(key) || REQUEST_FIELDS.has(key);
}

/** Where a key given to execute()'s options belongs instead (a backend option, a request field), said as a whole message, or undefined. */
export function executeKeyElsewhere(key: string): string | undefined {
  if (REQUEST_FIELDS.has(key)) return `not an option; it is a field of the request, execute()'s first argument: backend.execute({ pluginId, handlerId, input${key === 'context' ? ', context' : ''} }, options)`;
  if (Object.hasOwn(COMMON_OPTIONS, key)) return `not an option of execute(); it is an option of the backend, given when it is made: createExecutionBackend({ type, ${key} })`;
  const types = typesTaking(key);
  if (types) {
    const type = types.length === 1 ? `type: '${types[0]}'` : 'type';
    return `not an option of execute(); it is ${optionOfOtherBackends(key)!}, given when one is made: createExecutionBackend({ ${type}, ${key} })`;
  }
  return undefined;
}
