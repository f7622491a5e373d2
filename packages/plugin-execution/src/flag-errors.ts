import type { ValidationIssue } from '@kb-labs/plugin-execution-core';

/** The flag that gives each backend or worker option the backend checks (when it is first used). */
const FLAG_OF_OPTION: Readonly<Record<string, string>> = {
  'connection.servers': '--nats',
  pool: '--pool',
  subjectPrefix: '--prefix',
  concurrency: '--concurrency',
  id: '--id',
  'workspace.root': '--workspace-root',
  maxPayloadBytes: '--max-payload-bytes',
};

/**
 * The VALIDATION_ERRORs that check what the command line gave (the request's context, a queue's
 * or a worker's options): not a handler's, whose own errors and input's issues are its own.
 */
const CHECKS_THE_COMMAND_LINE = /^(?:Invalid execution request|Invalid queue backend options|Invalid execution worker options)\b/;

/** The flags given on a command line (`--context`, `--pool` …): a mistake is only ever in one of them. */
export function givenFlags(values: Record<string, unknown>): ReadonlySet<string> {
  return new Set(Object.keys(values).filter((name) => values[name] !== undefined).map((name) => `--${name}`));
}

/**
 * A VALIDATION_ERROR of a value the command line gave, said as the mistake in its flag (the
 * CLI exits 2 with it, as for --grant); undefined for any other error, and for one whose issues
 * are not all in flags that were `given`. The caller passes only the backend's (or worker's) own
 * refusal: for `run`, an error of an execution no runner took, never one a handler reported.
 */
export function flagMistake(error: unknown, given: ReadonlySet<string>): string | undefined {
  const e = error as { code?: unknown; message?: unknown; details?: { path?: unknown; issues?: unknown } } | undefined;
  // A root where no folder can be made (a file, /proc), said as the worker command says it.
  if (e?.code === 'WORKSPACE_ERROR' && typeof e.message === 'string' && e.message.startsWith('Cannot create workspace root ') && given.has('--workspace-root')) {
    return `--workspace-root: no workspace can be made there: ${e.message}`;
  }
  if (e?.code !== 'VALIDATION_ERROR' || typeof e.message !== 'string' || !CHECKS_THE_COMMAND_LINE.test(e.message)) return undefined;
  const issues: ValidationIssue[] = Array.isArray(e.details?.issues) ? (e.details.issues as ValidationIssue[]) : typeof e.details?.path === 'string' ? [{ path: e.details.path, message: e.message }] : [];
  const named = issues.map((issue) => ({ ...issue, flag: issue.path === 'context' || issue.path.startsWith('context.') ? '--context' : FLAG_OF_OPTION[issue.path] }));
  if (named.length === 0 || named.some((issue) => issue.flag === undefined || !given.has(issue.flag))) return undefined;
  if (named.every((issue) => issue.flag === '--context')) {
    const lines = named.map((issue) => `  - ${issue.path.slice('context.'.length) || '(the context)'}: ${issue.message}`);
    return `--context is not a context descriptor ({ requestId, tenantId, host, permissions, config, …fields of the host's own }):\n${lines.join('\n')}`;
  }
  return named.map((issue) => `${issue.flag}: ${issue.message}`).join('\n');
}
