import { ValidationError } from '../errors.js';
import { thrownText } from '../wire-value.js';
import { unnamedWorkingDirectory, unnamedWorkingDirectoryProblem } from './working-directory.js';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
const { isAbsolute, resolve } = process.getBuiltinModule('node:path');

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
 * A copy of backend options as they are now, for a backend made later (on first use), as a
 * backend's constructor takes them: what is plain data (`permissions`, `workspace`, limits …)
 * copied whole, so that a caller that changes its own objects afterwards (a grant widened in a
 * shared template) does not change the backend's; relative paths made absolute against the
 * working directory now (`plugins`, `workspace.root`; `file:` URLs are left as they are): see absolutePluginSource. `platform`, and
 * anything with a function or an object of a class in it (a logger), is kept as given.
 */
export function withAbsolutePaths(options: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  // A getter or Proxy in an option that throws as it is read is named.
  for (const [key, value] of Object.entries(options)) setOwn(copy, key, readable(key, () => (KEPT_AS_GIVEN.has(key) ? value : (plainDataCopy(value) ?? value))));
  readable('plugins', () => {
    if (Array.isArray(copy.plugins)) copy.plugins = copy.plugins.map(absolutePluginSource);
  });
  let refused: ValidationError | undefined;
  readable('workspace', () => {
    const workspace = copy.workspace;
    if (!isPlainObject(workspace) || typeof workspace.root !== 'string' || workspace.root === '' || workspace.root.startsWith('file:/')) return;
    refused = unnamedRootError(workspace.root);
    copy.workspace = { ...workspace, root: resolve(workspace.root) };
  });
  if (refused) throw refused;
  return copy;
}

/** A relative `workspace.root` refused when the working directory cannot be named (as WorkspaceManager refuses it): resolved, it would name another folder. */
function unnamedRootError(root: string): ValidationError | undefined {
  const unnamed = isAbsolute(root) ? undefined : unnamedWorkingDirectory();
  return unnamed ? new ValidationError(`Option "workspace.root" (${JSON.stringify(root)}) is relative, and ${unnamedWorkingDirectoryProblem(unnamed)}`, { details: { path: 'workspace.root' } }) : undefined;
}

/**
 * Live objects of the host, whatever they look like: `platform`'s services (one whose methods are
 * added after, a Proxy over `{}` that answers every call) are called as given, never copied.
 */
const KEPT_AS_GIVEN = new Set(['platform']);

function readable<T>(option: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    throw new ValidationError(`Option "${option}" could not be read: ${thrownText(error)}`, { details: { path: option }, cause: error });
  }
}

/** A deep copy of `value` if it is plain data (primitives, arrays, plain objects of data properties, not too deep); undefined if it is not. */
function plainDataCopy(value: unknown, depth = 0): unknown {
  if (typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (value === null || typeof value !== 'object') return value;
  if (depth > 32) return undefined;
  if (Array.isArray(value)) {
    const copy: unknown[] = [];
    for (let i = 0; i < value.length; i++) {
      const item = plainDataCopy(value[i], depth + 1);
      if (item === undefined && value[i] !== undefined) return undefined;
      copy.push(item);
    }
    return copy;
  }
  if (!isPlainObject(value) || Object.getOwnPropertySymbols(value).length > 0) return undefined;
  const copy: Record<string, unknown> = Object.getPrototypeOf(value) === null ? Object.create(null) : {};
  for (const key of Object.getOwnPropertyNames(value)) {
    const descriptor = Object.getOwnPropertyDescriptor(value, key)!;
    if (!('value' in descriptor)) return undefined;
    const item = plainDataCopy(descriptor.value, depth + 1);
    if (item === undefined && descriptor.value !== undefined) return undefined;
    Object.defineProperty(copy, key, { value: item, writable: true, enumerable: descriptor.enumerable === true, configurable: true });
  }
  return copy;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** `object[key] = value` as an own property, also for `__proto__` (a JSON-made key: kept, so that the backend refuses it by name, not set as the prototype). */
export function setOwn(object: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
  else object[key] = value;
}
