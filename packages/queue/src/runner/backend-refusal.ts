import { isExecutionError, type ValidationIssue } from '@kb-labs/plugin-execution-core';
import { validationError } from '@kb-labs/plugin-execution-core/host-kit';

/**
 * The worker's own option each of these options of its local backend comes from (localBackends):
 * a refusal of one is of that option, not of anything inside `backend`, where it is not given.
 */
const GIVEN_BY_THE_WORKER: Readonly<Record<string, string>> = { workspace: 'workspace', platform: 'platform', plugins: 'plugins', registry: 'plugins', maxConcurrency: 'concurrency' };

/**
 * The worker's local backend refusing the options it was made with (its constructor's
 * VALIDATION_ERROR), said as a refusal of the worker's options, each path as given to
 * startExecutionWorker: `prespwn` is `backend.prespwn`, `maxConcurrency` the worker's
 * `concurrency`. `type`: the local backend's. Any other error is returned as it is.
 */
export function asWorkerOptionsError(error: unknown, type: string): unknown {
  if (!isExecutionError(error) || error.code !== 'VALIDATION_ERROR') return error;
  const { issues, path, ...rest } = (error.details ?? {}) as { issues?: unknown; path?: unknown };
  // Issues (a schema's refusal), or a refusal of one option whose message starts with its name;
  // one of no option (the children's Node has no permission model) is said as it is.
  if (!Array.isArray(issues) && typeof path !== 'string') return error;
  const refused: ValidationIssue[] = Array.isArray(issues) ? (issues as ValidationIssue[]) : [{ path: path as string, message: withoutLeadingName(error.message, path as string) }];
  return validationError('Invalid execution worker options', refused.map((issue) => asWorkerIssue(issue, type)), { ...rest, phase: 'options' });
}

/** One issue of the local backend's options, its path from the worker's options. */
function asWorkerIssue(issue: ValidationIssue, type: string): ValidationIssue {
  const [, first = '', after = ''] = /^([A-Za-z_$][\w$]*)(.*)$/s.exec(issue.path) ?? [];
  const own = Object.hasOwn(GIVEN_BY_THE_WORKER, first) ? GIVEN_BY_THE_WORKER[first]! : undefined;
  if (own === undefined) return { path: first ? `backend.${issue.path}` : 'backend', message: issue.message };
  // Given under another name: that name said too, which the backend's message may use ("must not exceed maxThreads" of maxConcurrency).
  return { path: `${own}${after}`, message: own === first ? issue.message : `${issue.message} (the worker gives it to its ${type} backend as ${first})` };
}

/** "bwrapPath: no executable file at …" → "no executable file at …": the message of a refusal naming its option first, without the name. */
function withoutLeadingName(message: string, name: string): string {
  if (!message.startsWith(name)) return message;
  return message.slice(name.length).replace(/^:? /, '') || message;
}
