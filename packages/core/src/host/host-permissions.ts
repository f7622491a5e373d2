/**
 * A host started under Node's permission model (`--permission`) may not start threads or
 * processes unless it was also given the flag that allows them: Node's own error then says
 * "Access to this API has been restricted". Said as what it is, naming the flag the host lacks.
 */
export function refusedByHostPermissions(error: unknown, what: string, flag: '--allow-worker' | '--allow-child-process'): string | undefined {
  if ((error as { code?: unknown } | null)?.code !== 'ERR_ACCESS_DENIED') return undefined;
  return `the host process runs under Node's permission model (--permission) without ${flag}, so it cannot start ${what}: start it with ${flag} as well`;
}
