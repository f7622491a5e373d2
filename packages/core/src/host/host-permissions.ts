/**
 * A host started under Node's permission model (`--permission`, Node 20's `--experimental-permission`) may not start threads or
 * processes unless it was also given the flag that allows them: Node's own error then says
 * "Access to this API has been restricted". Said as what it is, naming the flag the host lacks.
 */
const SCOPES = {
  worker: { what: 'worker threads', flag: '--allow-worker', permission: 'WorkerThreads' },
  child: { what: 'child processes', flag: '--allow-child-process', permission: 'ChildProcess' },
} as const;

type Scope = keyof typeof SCOPES;

/** How Node's permission model is spelt: `--permission` (Node 22.13+ / 23.5+) or `--experimental-permission` (Node 20). */
export type PermissionFlag = '--permission' | '--experimental-permission';

/**
 * The spelling a Node that accepts `known` flags takes (this Node's by default; a subprocess
 * child's on another Node), or null if it has no permission model. From the flags it knows, never
 * from its version number, so a backport or a future rename is picked up.
 */
export function permissionModelFlag(known: ReadonlySet<string> = process.allowedNodeEnvironmentFlags): PermissionFlag | null {
  return known.has('--permission') ? '--permission' : known.has('--experimental-permission') ? '--experimental-permission' : null;
}

function refusal(scope: Scope, what: string = SCOPES[scope].what): string {
  const { flag } = SCOPES[scope];
  // Asked only of a host that runs under the model, so it has one of the spellings.
  return `the host process runs under Node's permission model (${permissionModelFlag() ?? '--permission'}) without ${flag}, so it cannot start ${what}: start it with ${flag} as well`;
}

/**
 * `error` is the permission model's refusal to start what `scope` names: said so; else undefined.
 * Only that refusal: one of a file the host may not read (`permission: 'FileSystemRead'`) is not
 * a missing `--allow-child-process`.
 */
export function refusedByHostPermissions(error: unknown, scope: Scope, what?: string): string | undefined {
  const denied = error as { code?: unknown; permission?: unknown } | null;
  if (denied?.code !== 'ERR_ACCESS_DENIED' || (denied.permission !== undefined && denied.permission !== SCOPES[scope].permission)) return undefined;
  return refusal(scope, what);
}

/** Node's permission model as the host process runs under it (`process.permission`), or undefined where it does not. */
function hostPermission(): { has(scope: string, reference?: string): boolean } | undefined {
  return (process as { permission?: { has(scope: string, reference?: string): boolean } }).permission;
}

/** For health(): the host's own permissions forbid what `scope` names (no permission model: undefined). */
export function hostPermissionProblem(scope: Scope): string | undefined {
  if (hostPermission()?.has(scope) ?? true) return undefined;
  return refusal(scope);
}

/**
 * Whether the host process may read (or write) `path`: always where it runs without Node's
 * permission model; under it, whether its `--allow-fs-*` grants cover it (a path they do not
 * makes `existsSync` and every other call on it throw ERR_ACCESS_DENIED).
 */
export function hostMayAccess(access: 'fs.read' | 'fs.write', path: string): boolean {
  return hostPermission()?.has(access, path) ?? true;
}
