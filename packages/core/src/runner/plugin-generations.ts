import path from 'node:path';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
const { createRequire } = process.getBuiltinModule('node:module');
const { pathToFileURL } = process.getBuiltinModule('node:url');

/**
 * Which generations of each plugin this runner (a thread, a process, the in-process host) has
 * imported, and how. Node caches a module per URL for the life of the runner, so a newer
 * generation of a plugin it has already imported is imported under a URL of its own
 * (`?generation=<n>`): a fresh module instance, while executions of the older one keep theirs.
 * The first generation a runner meets is imported under the plain URL (what a fresh thread or
 * child always does: no query in its stack traces).
 */
interface ImportedPlugin {
  newest: number;
  /** The URL query each generation was imported with. */
  queries: Map<number, string>;
}

const imported = new Map<string, ImportedPlugin>();

/** The URL to import the module of a handler of `generation` from (see above). */
export function handlerModuleUrl(entryPath: string, pluginRoot: string, generation: number): string {
  const href = pathToFileURL(entryPath).href;
  const plugin = imported.get(pluginRoot);
  if (!plugin) {
    imported.set(pluginRoot, { newest: generation, queries: new Map([[generation, '']]) });
    return href;
  }
  let query = plugin.queries.get(generation);
  if (query === undefined) {
    query = `?generation=${generation}`;
    plugin.queries.set(generation, query);
    if (generation > plugin.newest) {
      plugin.newest = generation;
      forgetCommonJsModules(pluginRoot);
    }
  }
  return href + query;
}

/**
 * Drop the plugin's own CommonJS modules (not its node_modules) from Node's require cache, so
 * that the next import loads them from disk. Modules already loaded keep working: whoever holds
 * them (an execution of the older generation) keeps its copy.
 */
function forgetCommonJsModules(pluginRoot: string): void {
  const cache = createRequire(path.join(pluginRoot, 'noop.js')).cache;
  const prefix = pluginRoot.endsWith(path.sep) ? pluginRoot : pluginRoot + path.sep;
  for (const file of Object.keys(cache)) {
    if (file.startsWith(prefix) && !file.slice(prefix.length).split(path.sep).includes('node_modules')) delete cache[file];
  }
}
