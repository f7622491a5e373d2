/**
 * A handler's module, loaded: imported once per load of its plugin's code (ESM or CommonJS), its
 * export resolved to the function to call, or why there is none (HANDLER_NOT_FOUND, a load's
 * HANDLER_ERROR). handler-runtime.ts runs what this finds.
 */
import type { Stats } from 'node:fs';
import type { HandlerContext } from '../define-handler.js';
import { functionsOf, isDefinedHandler, misnamedInputSchema, misnamedSchemaText } from '../define-handler.js';
import { HandlerError, HandlerNotFoundError, toHandlerError } from '../errors.js';
import type { RunnerTask } from './handler-runtime.js';
import { loadError } from './load-errors.js';
import { callingHiddenClass, importNamespace, refuseBackslashPath, refuseClassExport, refuseLinkOutOfFolder, refuseNonModuleFile } from './entry-module.js';
import { handlerModuleUrl, importFailed, retryUrl } from './plugin-generations.js';
import { passingShortage } from '../passing-shortage.js';
import { shownControls } from '../shown-controls.js';
import { extensionLeftOut } from '../entry-extension.js';
import { fileExists } from '../file-exists.js';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
// node:fs's callback form: node:fs is loaded with Node itself, node:fs/promises is not (~5 ms).
const { stat } = process.getBuiltinModule('node:fs');

type HandlerFunction = (input: unknown, ctx: HandlerContext) => unknown;
export interface LoadedHandler {
  run: HandlerFunction;
  schema: unknown;
  /** The load of the plugin's code it was imported for (loadOf). */
  load: number;
}

/** Which load of its plugin's code a task runs: its moduleKey, else (a task of an older host) its generation. */
function loadOf(task: RunnerTask): number {
  return task.moduleKey ?? task.generation ?? 0;
}

let loadingListener: ((loading: boolean) => void) | undefined;

/**
 * Be told when this thread (or process) starts and ends loading a handler's modules. The worker
 * pool holds back ending a thread meanwhile: Node's module loader reads the files through
 * descriptors shared with the whole process, and a thread ended mid-read leaves them open.
 */
export function onHandlerLoading(listener: ((loading: boolean) => void) | undefined): void {
  loadingListener = listener;
}

/**
 * Per-thread / per-process module cache: a handler's module is imported once per load of its
 * plugin's code (a registration, a reload) and reused; an execution of an older load keeps the
 * instance it was loaded with (plugin-generations.ts).
 */
const cache = new Map<string, Promise<LoadedHandler>>();
/** The newest handlers loaded so far, by module file then export, for the path that needs no waiting. */
const loaded = new Map<string, Map<string, LoadedHandler>>();

/** The handler loaded before for the task's load of its plugin's code (most executions of a warm runner), else undefined. */
export function loadedHandler(task: RunnerTask): LoadedHandler | undefined {
  const handler = loaded.get(task.entryPath)?.get(task.exportName);
  return handler?.load === loadOf(task) ? handler : undefined;
}

/** Load the task's handler; rejects with an ExecutionError (HANDLER_NOT_FOUND for a missing export, HANDLER_ERROR for a module that fails to load). */
export async function loadHandler(task: RunnerTask): Promise<LoadedHandler> {
  loadingListener?.(true);
  try {
    return await sharedLoad(task.entryPath, task.exportName, task);
  } catch (error) {
    throw toHandlerError(error);
  } finally {
    loadingListener?.(false);
  }
}

/** One import per load of a module's export, shared by the executions that ask for it meanwhile. */
function sharedLoad(entryPath: string, exportName: string, task: RunnerTask): Promise<LoadedHandler> {
  const load = loadOf(task);
  const key = `${entryPath}#${exportName}#${load}`;
  let loading = cache.get(key);
  if (!loading) {
    loading = importHandler(entryPath, exportName, task, load);
    cache.set(key, loading);
    loading.then(
      (handler) => {
        let exports = loaded.get(entryPath);
        if (!exports) loaded.set(entryPath, (exports = new Map()));
        if ((exports.get(exportName)?.load ?? -1) <= load) exports.set(exportName, handler);
      },
      // A failed load is not cached: the plugin may be fixed on disk.
      () => {
        if (cache.get(key) === loading) cache.delete(key);
      },
    );
  }
  return loading;
}

async function importHandler(entryPath: string, exportName: string, task: RunnerTask, load: number): Promise<LoadedHandler> {
  // Its size and time before the import: a file an editor saves meanwhile is seen changing.
  const found = await statOf(entryPath);
  refuseBackslashPath(entryPath, task);
  refuseLinkOutOfFolder(entryPath, task.pluginRoot, task);
  refuseNonModuleFile(entryPath, found, task);
  const url = handlerModuleUrl(entryPath, task.pluginRoot, load);
  try {
    // Boxed all the way (importNamespace): a module that exports `then` is no promise's value.
    const { namespace } = await importEntry(retryUrl(url, found), entryPath, task);
    return await handlerIn(namespace, { entryPath, exportName, task, load, before: fileState(found) });
  } catch (error) {
    // Node keeps what this URL gave (its failure, or a module without the handler): the entry is
    // imported again under another URL once it has changed (plugin-generations.ts).
    importFailed(url, found, passingShortage(error));
    throw error;
  }
}

async function importEntry(url: string, entryPath: string, task: RunnerTask): Promise<{ namespace: Record<string, unknown> }> {
  try {
    return await importNamespace(url);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException)?.code;
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && !(await fileExists(entryPath))) {
      const extension = await extensionLeftOut(entryPath);
      const hint = extension === undefined ? '' : `; ${shown(entryPath + extension)} does: Node adds no extension to a module's path, so give the entry in kb.plugin.json with its "${extension}"`;
      throw new HandlerNotFoundError(`Handler "${task.handlerId}" of plugin "${task.pluginId}": module ${shown(entryPath)} does not exist${hint}`, {
        details: { pluginId: task.pluginId, handlerId: task.handlerId, entry: entryPath },
      });
    }
    throw loadError(error, entryPath, task);
  }
}

/** The handler the entry's module `mod` exports, or why it has none. */
async function handlerIn(mod: Record<string, unknown>, at: { entryPath: string; exportName: string; task: RunnerTask; load: number; before: FileState | undefined }): Promise<LoadedHandler> {
  const { entryPath, exportName, task, load } = at;
  const exported = pickExport(mod, exportName);
  if (typeof exported === 'function') {
    refuseClassExport(exported as HandlerFunction, at);
    return { run: callingHiddenClass(exported as HandlerFunction, at), schema: undefined, load };
  }
  if (isDefinedHandler(exported)) {
    const def = exported as { run: HandlerFunction; input?: unknown };
    // A plain `{ run, inputSchema }` (no defineHandler to say it): refused as defineHandler refuses it.
    const misnamed = misnamedInputSchema(def);
    if (misnamed !== undefined) {
      throw new HandlerError(`Handler "${task.handlerId}" of plugin "${task.pluginId}": export "${exportName}" of ${shown(entryPath)}: ${misnamedSchemaText(shown(misnamed))} ({ input, run })`, {
        details: { name: 'TypeError', file: entryPath },
      });
    }
    return { run: (input, ctx) => def.run(input, ctx), schema: def.input, load };
  }
  // Not names a module exports itself: a transpiled module's flag, and (Node 23+) a CommonJS module's whole `module.exports`.
  const available = Object.keys(mod).filter((k) => k !== '__esModule' && k !== 'module.exports');
  if (savedHalfWay(at.before, fileState(await statOf(entryPath)))) {
    // A save caught between an editor's truncate and its write (empty when it was read, or written
    // again while it was imported): the module is broken, not missing.
    throw new HandlerError(`Handler "${task.handlerId}" of plugin "${task.pluginId}": ${shown(entryPath)} is empty or was being saved as it was loaded (saved half-way?)`, { details: { name: 'Error', file: entryPath } });
  }
  const several = typeof exported === 'object' && exported !== null ? functionsOf(exported) : [];
  const what = several.length > 1 ? `an object of several functions (${several.slice(0, 10).map(shown).join(', ')}), not one handler` : exported === null ? 'null' : typeof exported;
  // An export that is there but undefined (`export default undefined`) is no handler, not a missing one.
  throw new HandlerNotFoundError(
    exported === undefined && !available.includes(exportName)
      ? `Handler "${task.handlerId}" of plugin "${task.pluginId}": ${shown(entryPath)} has no export "${exportName}" (exports: ${available.map(shown).join(', ') || 'none'})${exportHint(mod, available, task.handlerId)}`
      : `Handler "${task.handlerId}" of plugin "${task.pluginId}": export "${exportName}" of ${shown(entryPath)} is not a handler (a function or defineHandler({ run }) was expected, got ${what})${exportHint(several.length > 0 ? (exported as Record<string, unknown>) : mod, several.length > 0 ? several : available, task.handlerId)}`,
    { details: { pluginId: task.pluginId, handlerId: task.handlerId, entry: entryPath, export: exportName, exports: available } },
  );
}

/**
 * A plugin folder's text as a message quotes it (its path, its modules' export names): a host may
 * print the message to a terminal, which would act on an escape sequence, a C1 control or a
 * bidirectional override; JSON quoting leaves the last two as they are. Details keep them.
 */
function shown(text: string): string {
  return shownControls(text, '');
}

/** What a manifest's "export" takes (its schema, host/manifest.ts). */
const EXPORT_NAME = /^[A-Za-z_$][\w$]*$/;

/**
 * The manifest field that would call a handler the file does export (`mod`: its namespace, or the
 * object its export is): the one named as the handler's id, else its only handler
 * (`export async function hello()` under a manifest with no "export"), else the ones to choose from.
 */
function exportHint(mod: Record<string, unknown>, available: readonly string[], handlerId: string): string {
  // A CommonJS module's namespace has its module.exports object as `default` beside its names.
  const named = typeof mod.default === 'object' && mod.default !== null ? available.filter((name) => name !== 'default') : available;
  const found = named.filter((name) => typeof mod[name] === 'function' || isDefinedHandler(mod[name]));
  // Only a name the manifest's "export" takes is hinted: a module may export under any string ("my-handler").
  const handlers = found.filter((name) => EXPORT_NAME.test(name));
  if (handlers.length === 0 && found.length > 0) return `; "export" in kb.plugin.json takes a name such as "run", not ${shown(JSON.stringify(found[0]))}: export the handler under one too (export { handler as run })`;
  const meant = handlers.includes(handlerId) ? handlerId : handlers.length === 1 ? handlers[0]! : undefined;
  const field = `on handler ${JSON.stringify(handlerId)} in kb.plugin.json`;
  if (meant !== undefined) return `; set "export": ${JSON.stringify(meant)} ${field}`;
  if (handlers.length === 0) return '';
  return `; set "export" ${field} to the one it runs: ${handlers.slice(0, 10).map((name) => JSON.stringify(name)).join(', ')}${handlers.length > 10 ? ', …' : ''}`;
}

/**
 * Named ESM export, a CJS `module.exports` property, or a CJS `exports.default`: transpiled (marked
 * `__esModule`), or written by hand, when it is a handler (`module.exports` is then the object).
 */
function pickExport(mod: Record<string, unknown>, exportName: string): unknown {
  let value = Object.hasOwn(mod, exportName) ? mod[exportName] : undefined;
  const def = mod.default as Record<string, unknown> | undefined;
  if (value === undefined && def !== null && typeof def === 'object' && Object.hasOwn(def, exportName)) value = def[exportName];
  if (exportName === 'default' && value !== null && typeof value === 'object' && !isDefinedHandler(value)) {
    const inner = value as Record<string, unknown>;
    const handlerInside = typeof inner.default === 'function' || isDefinedHandler(inner.default);
    if ((inner.__esModule || handlerInside) && Object.hasOwn(inner, 'default')) value = inner.default;
  }
  return value;
}

interface FileState {
  size: number;
  mtimeMs: number;
}

function statOf(file: string): Promise<Stats | undefined> {
  return new Promise((resolve) => stat(file, (error, stats) => resolve(error ? undefined : stats)));
}

function fileState(stats: Stats | undefined): FileState | undefined {
  return stats?.isFile() ? { size: stats.size, mtimeMs: stats.mtimeMs } : undefined;
}

/** Empty before or after the import, or changed while it was imported. */
function savedHalfWay(before: FileState | undefined, after: FileState | undefined): boolean {
  if (!before || !after) return false;
  return before.size === 0 || after.size === 0 || before.mtimeMs !== after.mtimeMs || before.size !== after.size;
}
