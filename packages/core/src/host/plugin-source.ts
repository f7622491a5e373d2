import path from 'node:path';
import { ValidationError } from '../errors.js';
import { validationError } from '../validation.js';
import { folderPath } from './manifest-file.js';
import { MANIFEST_FILE } from './manifest.js';
import { describeThrown } from '../wire-value.js';
import { shownControls } from '../shown-controls.js';
import { didYouMean, firstUnknownKey } from './nearest-name.js';

const SOURCE_KEYS = ['root', 'manifest'];

/**
 * A plugin as the host gives it: a folder holding `kb.plugin.json` (a path — a relative one
 * resolves from the process's working directory — or a `file:` URL, e.g. `new URL('./plugins/x',
 * import.meta.url)`), or a folder plus an in-memory manifest.
 */
export type PluginSource = string | URL | { root: string; manifest: unknown };

export function isFolder(source: PluginSource): source is string | URL {
  return typeof source === 'string' || source instanceof URL;
}

/** The folder a source names, resolved; undefined for one that names none usable. */
export function sourceRoot(source: PluginSource): string | undefined {
  try {
    if (isFolder(source)) return path.resolve(folderPath(source));
    const root = (source as { root?: unknown } | null)?.root;
    return typeof root === 'string' && root.length > 0 ? path.resolve(root) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What register() was given, checked: `{ root, manifest }` with a non-empty root and a manifest
 * (a folder path alone is load()'s), each field read once (readSource).
 */
export function checkedSource(given: { root: string; manifest: unknown }): { root: string; manifest: unknown } {
  if (typeof given === 'string' || given instanceof URL) {
    const message = `is a folder: register() takes { root, manifest }; load("${String(given)}") reads the folder's ${MANIFEST_FILE}`;
    throw validationError('register() was given a folder path', [{ path: 'root', message }]);
  }
  const source = readSource(given);
  if (!source || typeof source !== 'object' || typeof source.root !== 'string' || source.root.length === 0) {
    throw new ValidationError('A plugin must be a folder path or { root: string, manifest: object }', {
      details: { issues: [{ path: 'root', message: 'must be a non-empty path string' }] },
    });
  }
  if (source.manifest === undefined) {
    const message = `is required (the folder's ${MANIFEST_FILE} is read when the folder path alone is given: "${source.root}")`;
    throw validationError('A plugin given as { root, manifest } needs its manifest', [{ path: 'manifest', message }]);
  }
  // Outside Windows a "\" is a character of a name, and Node imports no module from a path that
  // holds one (its file URL is refused): no handler of the plugin could ever load. Said now, not at
  // each execution (which still refuses one, entry-module.ts).
  if (path.sep === '/' && source.root.includes('\\')) {
    const message = 'has a "\\" in its path, and Node imports no module from such a path: move the plugin to a folder without one';
    throw validationError(`Plugin folder ${shownControls(source.root, '')} cannot be loaded`, [{ path: 'root', message }]);
  }
  return source;
}

/**
 * A `{ root, manifest }` source's two fields, each read once: a key it does not take (`watch`,
 * `manifests`) is a ValidationError naming it, as is a field whose getter throws.
 */
export function readSource(given: { root: string; manifest: unknown }): { root: string; manifest: unknown } {
  if (!given || typeof given !== 'object') return given;
  const unknown = firstUnknownKey(given, SOURCE_KEYS);
  if (unknown !== undefined) {
    throw validationError('A plugin given as { root, manifest } takes those two keys only', [{ path: unknown, message: `is not taken${didYouMean(unknown, SOURCE_KEYS)}` }]);
  }
  const read = (key: 'root' | 'manifest'): unknown => {
    try {
      return given[key];
    } catch (error) {
      throw validationError('A plugin given as { root, manifest } could not be read', [{ path: key, message: `its getter threw: ${error instanceof Error ? error.message : describeThrown(error, 'it')}` }]);
    }
  };
  return { root: read('root') as string, manifest: read('manifest') };
}
