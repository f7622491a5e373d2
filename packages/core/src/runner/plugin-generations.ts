import type { Stats } from 'node:fs';
import path from 'node:path';
import { hostPluginLoadsIfAny, type ImportedPlugin } from '../plugin-loads.js';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
const { realpathSync } = process.getBuiltinModule('node:fs');
const { createRequire } = process.getBuiltinModule('node:module');
const { fileURLToPath, pathToFileURL } = process.getBuiltinModule('node:url');

/**
 * Which loads of each plugin's code this runner (a thread, a process, the in-process host) has
 * imported, and how. Node caches a module per URL for the life of the runner, so another load
 * (a reload, or the same folder registered again: another backend, another plugin id) of a
 * plugin folder it has already imported from is imported under a URL of its own
 * (`?load=<moduleKey>`): a fresh module instance, while executions of the older one keep theirs.
 * The first load a runner meets is imported under the plain URL (what a fresh thread or child
 * always does: no query in its stack traces).
 *
 * The module is imported from its real path, read now: Node keeps the real path it first found
 * for a path for the life of the process, so a plugin folder or entry that is a symbolic link,
 * pointed elsewhere since (a release switched by its `current` link), would load the old target.
 */
let runnerImports: Map<string, ImportedPlugin> | undefined;

/**
 * This runner's imports, by plugin root: the host's table (every copy of core in the process, as
 * Node's module cache is) when the runner is the host's own process, else one of its own. Taken at
 * the first load, before any plugin code has run here, so no plugin can put a table of its own there.
 */
function importedPlugins(): Map<string, ImportedPlugin> {
  runnerImports ??= hostPluginLoadsIfAny()?.imported ?? new Map();
  return runnerImports;
}

/** The URL to import the module of a handler of load `moduleKey` from (see above). */
export function handlerModuleUrl(entryPath: string, pluginRoot: string, moduleKey: number): string {
  const root = realPath(pluginRoot);
  const href = pathToFileURL(realPath(entryPath)).href;
  const imported = importedPlugins();
  const plugin = imported.get(root);
  if (!plugin) {
    imported.set(root, { newest: moduleKey, queries: new Map([[moduleKey, '']]) });
    return href;
  }
  let query = plugin.queries.get(moduleKey);
  if (query === undefined) {
    query = `?load=${moduleKey}`;
    plugin.queries.set(moduleKey, query);
    if (moduleKey > plugin.newest) {
      plugin.newest = moduleKey;
      forgetCommonJsModules(root);
    }
  }
  return href + query;
}

/** `file`'s real path now (Node's own cache of it is never refreshed); itself where it cannot be read (the import then says why). */
function realPath(file: string): string {
  try {
    return realpathSync.native(file);
  } catch {
    return file;
  }
}

/**
 * Drop the plugin's own CommonJS modules (not its node_modules) from Node's require cache, so
 * that the next import loads them from disk. Modules already loaded keep working: whoever holds
 * them (an execution of the older load) keeps its copy.
 */
function forgetCommonJsModules(pluginRoot: string): void {
  const cache = createRequire(path.join(pluginRoot, 'noop.js')).cache;
  const prefix = pluginRoot.endsWith(path.sep) ? pluginRoot : pluginRoot + path.sep;
  for (const file of Object.keys(cache)) {
    if (file.startsWith(prefix) && !file.slice(prefix.length).split(path.sep).includes('node_modules')) delete cache[file];
  }
}

/**
 * Imports that failed, by handlerModuleUrl's URL: the entry as it was then, and how many times it
 * has been tried again under a URL of its own. Node keeps a failed import's outcome for its URL
 * (the wrapper's link error for an entry that did not exist yet, the entry's own parse error), so
 * an entry made or fixed on disk since would fail as before until a reload (as would one that
 * imported but did not export the handler: empty, a stub). Tried again only once
 * the entry has changed: a plugin that stays broken adds no module to the runner per execution.
 * (A module the entry imports, fixed on its own, is not seen: ES modules are cached by their URLs.)
 */
const failedImports = new Map<string, { state: string; tries: number }>();

/**
 * The URL to import handlerModuleUrl's `url` from, the entry file being `stats` (undefined:
 * missing) now. Tried again, a CommonJS entry is dropped from Node's require cache too (it is
 * cached by its path, whatever the URL); the modules it requires are not (other handlers share
 * them, and their state).
 */
export function retryUrl(url: string, stats: Stats | undefined): string {
  const failed = failedImports.get(url);
  if (!failed) return url;
  const state = entryState(stats);
  if (failed.state !== state) {
    failed.state = state;
    failed.tries++;
    forgetCommonJsEntry(url);
  }
  return failed.tries === 0 ? url : `${url}${url.includes('?') ? '&' : '?'}retry=${failed.tries}`;
}

/**
 * An import of handlerModuleUrl's `url` failed, the entry file being `stats` when it was tried.
 * `passing`: for a shortage of the process (passingShortage), nothing of the entry's: the next
 * execution imports it again, under a URL of its own, changed or not (else Node's kept EMFILE
 * would fail every execution of the handler for the rest of the process).
 */
export function importFailed(url: string, stats: Stats | undefined, passing = false): void {
  const state = passing ? PASSING : entryState(stats);
  const failed = failedImports.get(url);
  if (failed) failed.state = state;
  else failedImports.set(url, { state, tries: 0 });
}

/** A state no entry file has: the next retryUrl() gives a URL of its own. */
const PASSING = 'a passing shortage';

function entryState(stats: Stats | undefined): string {
  return stats ? `${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}` : 'missing';
}

function forgetCommonJsEntry(url: string): void {
  const file = fileURLToPath(url);
  delete createRequire(file).cache[file];
}
