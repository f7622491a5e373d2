// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
const { resolve } = process.getBuiltinModule('node:path');

/**
 * A plugin source with a relative folder made absolute against the working directory now, when
 * the caller names it: plugins are read later (on first use), by when the caller may have
 * changed directory. URLs, `file:` strings and values validation will refuse are left as they are.
 */
export function absolutePluginSource<T>(source: T): T {
  if (typeof source === 'string') return (source.startsWith('file:') || source === '' ? source : resolve(source)) as T;
  if (isPlainObject(source) && typeof source.root === 'string' && source.root !== '') return { ...source, root: resolve(source.root) } as T;
  return source;
}

/**
 * A copy of backend options with relative paths made absolute against the working directory now
 * (`plugins`, `workspace.root`), for a backend made later: see absolutePluginSource. The arrays
 * are copied too, so that a caller that changes its own afterwards does not change the backend's.
 */
export function withAbsolutePaths(options: Record<string, unknown>): Record<string, unknown> {
  const copy = { ...options };
  if (Array.isArray(copy.plugins)) copy.plugins = copy.plugins.map(absolutePluginSource);
  const workspace = copy.workspace;
  if (isPlainObject(workspace) && typeof workspace.root === 'string' && workspace.root !== '') copy.workspace = { ...workspace, root: resolve(workspace.root) };
  return copy;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
