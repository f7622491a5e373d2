/**
 * A host started under Node's permission model (`--permission`, Node 20's `--experimental-permission`) may not start threads or
 * processes unless it was also given the flag that allows them: Node's own error then says
 * "Access to this API has been restricted". Said as what it is, naming the flag the host lacks.
 */
const SCOPES = {
  worker: { what: 'worker threads', flag: '--allow-worker' },
  child: { what: 'child processes', flag: '--allow-child-process' },
} as const;

type Scope = keyof typeof SCOPES;

function refusal(scope: Scope, what: string = SCOPES[scope].what): string {
  const { flag } = SCOPES[scope];
  // The model's flag as this Node spells it (Node 20: --experimental-permission).
  const model = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
  return `the host process runs under Node's permission model (${model}) without ${flag}, so it cannot start ${what}: start it with ${flag} as well`;
}

/** `error` is the permission model's refusal to start what `scope` names: said so; else undefined. */
export function refusedByHostPermissions(error: unknown, scope: Scope, what?: string): string | undefined {
  if ((error as { code?: unknown } | null)?.code !== 'ERR_ACCESS_DENIED') return undefined;
  return refusal(scope, what);
}

/** For health(): the host's own permissions forbid what `scope` names (no permission model: undefined). */
export function hostPermissionProblem(scope: Scope): string | undefined {
  const permission = (process as { permission?: { has(scope: string): boolean } }).permission;
  if (!permission || permission.has(scope)) return undefined;
  return refusal(scope);
}
