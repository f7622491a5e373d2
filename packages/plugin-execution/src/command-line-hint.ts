import type { ExecutionResult, PermissionSpec } from '@kb-labs/plugin-execution-core';
import { terminalSafeJson } from './terminal-text.js';

/** Where this command line grants permissions: --grant, a "permissions" field in --context (which then replaces it), or nowhere. */
export type GrantFlag = 'grant' | 'context' | undefined;

/** What to add on this command line for a failure whose message speaks of a host's options. */
export function commandLineHint(error: Extract<ExecutionResult, { ok: false }>['error'], grantIn: GrantFlag): string {
  const details = error.details as { phase?: unknown; missing?: unknown; worker?: unknown } | undefined;
  if (error.code === 'PERMISSION_DENIED' && details?.phase === 'preflight' && Array.isArray(details.missing)) {
    // The manifest's paths as they are, in JSON a terminal shows without acting on (a C1 control written \u009b).
    const grant = terminalSafeJson(JSON.stringify(grantFor(details.missing as string[])));
    // A queue worker's cap refused it: what this command line grants does not reach past that.
    if (typeof details.worker === 'string') return `\n(the worker's cap: its operator widens it, adding ${grant} to kb-plugin-exec worker --grant)`;
    return `\n(on this command line: ${grantIn === 'context' ? `add ${grant} to "permissions" in --context` : grantIn === 'grant' ? `add ${grant} to --grant` : `--grant ${shellQuoted(grant)}`})`;
  }
  if (/The host's platform has no method /.test(error.message)) {
    return '\n(on this command line: --platform <module> gives the handler the services it calls)';
  }
  return '';
}

/** A grant of what a PERMISSION_DENIED's `details.missing` lists (`platform.kv.get`, `fs.read:data`, `env:TOKEN`, `network` …). */
function grantFor(missing: readonly string[]): PermissionSpec {
  const grant: { platform?: Record<string, true | string[]>; fs?: { read?: string[]; write?: string[] }; env?: string[]; network?: true; childProcess?: true } = {};
  for (const item of missing) {
    // `s`: a manifest's path may hold a line break (or U+2028), which `.` alone does not take.
    const fs = /^fs\.(read|write):(.+)$/s.exec(item);
    const platform = /^platform\.([^.\s]+)(?:\.([^.\s]+))?/.exec(item);
    if (fs) ((grant.fs ??= {})[fs[1] as 'read' | 'write'] ??= []).push(fs[2]!);
    else if (item.startsWith('env:')) (grant.env ??= []).push(item.slice(4));
    else if (item === 'network' || item === 'childProcess') grant[item] = true;
    else if (platform) {
      const services = (grant.platform ??= {});
      const [, service, method] = platform as unknown as [string, string, string | undefined];
      const had = services[service];
      services[service] = !method || method === '*' || had === true ? true : [...(had ?? []), method];
    }
  }
  return grant;
}

/**
 * `text` as one single-quoted shell word, its own `'` written `'\''`: a path a manifest declares
 * (`data'$(…)'`) stays inside the quotes of the command a user pastes, never run by the shell.
 */
function shellQuoted(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}
