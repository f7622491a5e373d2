import path from 'node:path';
import { ValidationError, type PluginSource, type RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { shownControls, sourceRoot } from '@kb-labs/plugin-execution-core/backend-kit';
import { withRealPath } from './runtime-paths.js';

/** A path's character no child can be granted it with, and why (nodeFlags refuses the same at each start: the backstop). */
interface Ungrantable {
  character: string;
  reason: 'comma-in-path' | 'wildcard-in-path' | 'backslash-in-path';
  why: string;
}

/**
 * What in `p` (or the real path it leads to: both are granted) no child could be granted it with:
 * with Node's permission model on, a `,` (Node 20 splits flag values at commas) or a `*` (read as a
 * wildcard); for a plugin folder outside Windows, a `\` (Node imports no module from such a path).
 */
function ungrantable(p: string, permissionModel: boolean, pluginFolder: boolean, real = true): Ungrantable | undefined {
  for (const shown of real ? withRealPath(p) : [p]) {
    if (permissionModel && shown.includes(',')) return { character: ',', reason: 'comma-in-path', why: "Node's permission flags split a path at a comma" };
    if (permissionModel && shown.includes('*')) return { character: '*', reason: 'wildcard-in-path', why: "Node's permission flags read a `*` as a wildcard" };
    if (pluginFolder && path.sep === '/' && shown.includes('\\')) return { character: '\\', reason: 'backslash-in-path', why: 'Node imports no module from a path with one' };
  }
  return undefined;
}

/**
 * The constructor's check: a workspace root and `allowRead` folders only the permission model
 * cannot grant, and each plugin of the `plugins` option (`plugins[i]`). A VALIDATION_ERROR naming
 * the option, the path and the character (`permissionModel`: children run under Node's permission model), instead of one per execution naming a lease directory.
 */
export function refuseUngrantableOptions(
  permissionModel: boolean,
  given: { workspaceRoot: string | undefined; allowRead: readonly string[]; plugins: readonly PluginSource[] },
): void {
  const named: Array<[string, string | undefined, boolean]> = [
    ['workspace.root', given.workspaceRoot, false],
    ...given.allowRead.map((p, i): [string, string, boolean] => [`allowRead[${i}]`, p, false]),
    ...given.plugins.map((source, i): [string, string | undefined, boolean] => [`plugins[${i}]`, sourceRoot(source), true]),
  ];
  for (const [option, p, pluginFolder] of named) {
    const problem = p === undefined ? undefined : ungrantable(p, permissionModel, pluginFolder);
    if (problem) throw ungrantableError(option, p!, problem);
  }
}

/** registerPlugin()'s check of the folder it is given: a VALIDATION_ERROR naming it, or undefined. */
export function ungrantablePluginError(permissionModel: boolean, source: PluginSource): ValidationError | undefined {
  const folder = sourceRoot(source);
  const problem = folder === undefined ? undefined : ungrantable(folder, permissionModel, true);
  return problem ? ungrantableError('plugin folder', folder!, problem) : undefined;
}

/** health()'s: each registered plugin (a registry shared with another backend included) whose handlers could never run here. */
export function ungrantablePluginProblems(permissionModel: boolean, plugins: readonly RegisteredPlugin[]): string[] {
  return plugins.flatMap((plugin) => {
    // The folder as registered, not its real path: asked at every health() call, of every plugin (the real path is checked at each execution).
    const problem = ungrantable(plugin.root, permissionModel, true, false);
    return problem ? [`plugin "${shownControls(plugin.id, '')}" can never run on the subprocess backend: ${message('its folder', plugin.root, problem)}`] : [];
  });
}

function ungrantableError(option: string, p: string, problem: Ungrantable): ValidationError {
  return new ValidationError(message(option, p, problem), { details: { path: option, value: p, reason: problem.reason } });
}

function message(what: string, p: string, problem: Ungrantable): string {
  return `${what} ${shownControls(JSON.stringify(p), '')} contains "${problem.character}", which the subprocess backend cannot grant a child (${problem.why}): move it to a path without one`;
}
