import path from 'node:path';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
const { realpathSync } = process.getBuiltinModule('node:fs');
const { createRequire } = process.getBuiltinModule('node:module');
const { pathToFileURL } = process.getBuiltinModule('node:url');

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
interface ImportedPlugin {
  newest: number;
  /** The URL query each load was imported with. */
  queries: Map<number, string>;
}

const imported = new Map<string, ImportedPlugin>();

/** The URL to import the module of a handler of load `moduleKey` from (see above). */
export function handlerModuleUrl(entryPath: string, pluginRoot: string, moduleKey: number): string {
  const root = realPath(pluginRoot);
  const href = pathToFileURL(realPath(entryPath)).href;
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
