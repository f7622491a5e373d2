import type { BuiltInBackendType } from './backend-packages.js';

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
  connection: ['queue'],
  pool: ['queue'],
  subjectPrefix: ['queue'],
  queueBound: ['queue'],
  heartbeatMs: ['queue'],
  workerLostMs: ['queue'],
  maxPayloadBytes: ['queue'],
  streamStorage: ['queue'],
} as const satisfies Record<string, readonly BuiltInBackendType[]>);

/** "; it is an option of the subprocess backend", for an option `key` of other backend types than this one; else undefined. */
export function optionOfOtherBackends(key: string): string | undefined {
  const types: readonly string[] | undefined = Object.hasOwn(BACKEND_OWN_OPTIONS, key) ? BACKEND_OWN_OPTIONS[key as keyof typeof BACKEND_OWN_OPTIONS] : undefined;
  if (!types) return undefined;
  const named = types.length === 1 ? `the ${types[0]} backend` : `the ${types.slice(0, -1).join(', ')} and ${types.at(-1)} backends`;
  return `an option of ${named}`;
}
