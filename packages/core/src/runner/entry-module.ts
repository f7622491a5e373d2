import path from 'node:path';
import type { Stats } from 'node:fs';
import { types } from 'node:util';
import { HandlerNotFoundError, ValidationError } from '../errors.js';
import { notModuleFile } from '../module-file.js';
import { setImmediate } from '../real-timers.js';
import { shownControls } from '../shown-controls.js';
// Node's built-ins by getBuiltinModule, as in handler-loader.ts: no ES facade built at start-up.
const { lstatSync, readlinkSync, realpathSync } = process.getBuiltinModule('node:fs');

/**
 * Node 20's loader has a fault fixed in 22 (nodejs/node#51603): a CommonJS module that throws as it
 * loads, imported through an ES module, rejects the import and, with the same error, a promise of
 * its own nobody handles, which would end an in-process host (hushLoaderEcho).
 */
const NODE_20 = Number(process.versions.node.split('.')[0]) < 22;

/**
 * The namespace of the module at `url`, boxed. A module may export `then` (a fluent API's step),
 * and a promise resolved with its namespace (`import()`'s, an async function's) calls that `then`
 * as a promise's: the import would never settle, or settle with whatever it passed on. Imported
 * through a module that re-exports it as one name, and handed on in a box, it arrives as it is.
 * An error that names that module names the entry's URL instead.
 */
export async function importNamespace(url: string): Promise<{ namespace: Record<string, unknown> }> {
  const wrapper = `data:text/javascript,export * as namespace from ${encodeURIComponent(JSON.stringify(url))};`;
  try {
    return (await import(wrapper)) as { namespace: Record<string, unknown> };
  } catch (error) {
    if (NODE_20) hushLoaderEcho(error);
    throw namingEntry(error, wrapper, url);
  }
}

/** Node's own error naming the wrapper names the entry's URL instead; what plugin code threw is left as it is. */
function namingEntry(error: unknown, wrapper: string, url: string): unknown {
  try {
    if (error instanceof Error && typeof error.message === 'string' && error.message.includes(wrapper)) error.message = error.message.replaceAll(wrapper, url);
  } catch {
    // A message getter or setter of the plugin's: its error goes as it is.
  }
  return error;
}

/**
 * On Node 20, the rejection the loader leaves unhandled with the value an import failed with (see
 * above) is let go, once, in the turn it comes. Another rejection nobody handled that comes in that
 * turn is raised again once this listener is gone, so that the process treats it as its own.
 */
function hushLoaderEcho(error: unknown): void {
  const listener = (reason: unknown): void => {
    if (reason === error) return;
    if (process.listenerCount('unhandledRejection') > 1) return;
    process.off('unhandledRejection', listener);
    void Promise.reject(reason);
  };
  process.on('unhandledRejection', listener);
  setImmediate(() => process.off('unhandledRejection', listener)).unref();
}

/** Node refuses a file URL with an encoded backslash: a module whose path has one (outside Windows) cannot be imported at all. */
export function refuseBackslashPath(entryPath: string, task: { pluginId: string; handlerId: string }): void {
  if (path.sep !== '/' || !entryPath.includes('\\')) return;
  throw new ValidationError(`Handler "${task.handlerId}" of plugin "${task.pluginId}": ${shownControls(entryPath, '')} has a backslash in its path, and Node imports no module from such a path; move the plugin to a folder without one`, {
    details: { pluginId: task.pluginId, handlerId: task.handlerId, entry: entryPath },
  });
}

/**
 * An entry that is a symbolic link out of the plugin folder, made or changed after the manifest
 * was read (registration refuses one that is there then): a ValidationError naming where it
 * leads, as registration's does, on every backend. Looked at when the module is first imported.
 */
export function refuseLinkOutOfFolder(entryPath: string, pluginRoot: string, task: { pluginId: string; handlerId: string }): void {
  const target = linkOutOfFolder(entryPath, pluginRoot);
  if (target === undefined) return;
  const entry = `./${path.relative(pluginRoot, entryPath).split(path.sep).join('/')}`;
  throw new ValidationError(`Handler "${task.handlerId}" of plugin "${task.pluginId}": ${shownControls(entry, '')} is a link to ${shownControls(target, '')}, outside the plugin folder; copy the file into the folder`, {
    details: { pluginId: task.pluginId, handlerId: task.handlerId, entry: entryPath, target },
  });
}

/**
 * Where the entry leads when that is out of the plugin folder. Where its real path cannot be
 * read (an OS sandbox shows a child only the plugin's folder, so the target is not there), the
 * first link on the way from the folder that points out of it.
 */
function linkOutOfFolder(entryPath: string, pluginRoot: string): string | undefined {
  const root = realOrUndefined(pluginRoot);
  if (root === undefined) return undefined;
  const inside = (p: string): boolean => p === root || p.startsWith(`${root}${path.sep}`);
  const real = realOrUndefined(entryPath);
  if (real !== undefined) return inside(real) ? undefined : real;
  let at = root;
  for (const part of path.relative(pluginRoot, entryPath).split(path.sep)) {
    at = path.join(at, part);
    // A link to a link: each one followed, as the kernel would (40 at most, its own limit).
    for (let hops = 0; hops < 40; hops++) {
      try {
        if (!lstatSync(at).isSymbolicLink()) break;
        at = path.resolve(path.dirname(at), readlinkSync(at));
      } catch {
        // Not there at all: the import says so.
        return undefined;
      }
      if (!inside(at)) return at;
    }
  }
  return undefined;
}

function realOrUndefined(file: string): string | undefined {
  try {
    return realpathSync.native(file);
  } catch {
    return undefined;
  }
}

/**
 * An entry that is no module file (a FIFO, a device, a folder, one past 2 GiB), made so after the
 * manifest was read (registration refuses one that is there then): a ValidationError naming it,
 * before the import, which would hold a FIFO's read for good.
 */
export function refuseNonModuleFile(entryPath: string, stats: Stats | undefined, task: { pluginId: string; handlerId: string; pluginRoot: string }): void {
  const problem = notModuleFile(`./${path.relative(task.pluginRoot, entryPath).split(path.sep).join('/')}`, stats);
  if (problem === undefined) return;
  throw new ValidationError(`Handler "${task.handlerId}" of plugin "${task.pluginId}": ${shownControls(problem, '')}`, {
    details: { pluginId: task.pluginId, handlerId: task.handlerId, entry: entryPath },
  });
}

/**
 * A class's own static `run` (`class Handler { static async run() {} }`), which an instance does
 * not have. Read by its descriptor: a static getter of the plugin's is not run here.
 */
function staticRun(klass: object): boolean {
  return typeof Object.getOwnPropertyDescriptor(klass, 'run')?.value === 'function';
}

/**
 * A class exported as the handler (`export default class Handler { run() {} }`): called as a
 * function, it throws "Class constructor Handler cannot be invoked without 'new'" from inside the
 * runner, naming neither the file nor the export. HANDLER_NOT_FOUND saying so, as for an export
 * that is no function.
 */
export function refuseClassExport(exported: (...args: never[]) => unknown, at: ClassExportAt): void {
  if (/^class\b/.test(Function.prototype.toString.call(exported))) throw classExportError(exported, 'a class', at);
}

interface ClassExportAt {
  entryPath: string;
  exportName: string;
  task: { pluginId: string; handlerId: string };
}

function classExportError(exported: (...args: never[]) => unknown, kind: string, at: ClassExportAt): HandlerNotFoundError {
  const { entryPath, exportName, task } = at;
  // The file's path and the class's name are the plugin's text: written out as the loader's other messages (handler-loader.ts, shown).
  const className = classNameOf(exported);
  const name = shownControls(className || 'anonymous', '');
  const called = className ? name : 'Handler';
  return new HandlerNotFoundError(
    `Handler "${task.handlerId}" of plugin "${task.pluginId}": export "${exportName}" of ${shownControls(entryPath, '')} is ${kind} (${name}), which cannot be called without new: ` +
      `export a function that calls it, such as (input, ctx) => ${staticRun(exported) ? called : `new ${called}()`}.run(input, ctx)`,
    { details: { pluginId: task.pluginId, handlerId: task.handlerId, entry: entryPath, export: exportName } },
  );
}

/**
 * The HANDLER_NOT_FOUND errors of `callingHiddenClass`, each with how to say it for a task: the
 * loaded export is shared by every handler id of its file and export, the task that loaded it is
 * only the first of them.
 */
const classCallRefusals = new WeakMap<object, (task: ClassExportAt['task']) => HandlerNotFoundError>();

/** The refusal `error` is, said for `task` (what the runtime reports, not as the handler's), else undefined. */
export function classCallRefusal(error: unknown, task: ClassExportAt['task']): HandlerNotFoundError | undefined {
  return typeof error === 'object' && error !== null ? classCallRefusals.get(error)?.(task) : undefined;
}

/**
 * A callable whose source cannot be read (`function () { [native code] }`): a bound class
 * (`Handler.bind(null)`) or a Proxy of one is known for a class only when calling it throws V8's
 * "Class constructor Handler cannot be invoked without 'new'" before any of its code runs. That
 * TypeError, thrown by the call itself (synchronously, naming the export's class), becomes the
 * HANDLER_NOT_FOUND a plain class gets; what else it throws is the handler's. Other exports are
 * returned as they are: nothing is added to their calls.
 */
export function callingHiddenClass<F extends (input: unknown, ctx: never) => unknown>(exported: F, at: ClassExportAt): F {
  if (!/\{\s*\[native code\]\s*\}\s*$/.test(Function.prototype.toString.call(exported))) return exported;
  return ((input: unknown, ctx: never) => {
    try {
      return exported(input, ctx);
    } catch (error) {
      // Read on this path only: a Proxy's traps are the plugin's code.
      if (!calledAsClass(error, exported)) throw error;
      const kind = types.isProxy(exported) ? 'a Proxy of a class' : 'a bound class';
      const refusal = classExportError(exported, kind, at);
      classCallRefusals.set(refusal, (task) => classExportError(exported, kind, { ...at, task }));
      throw refusal;
    }
  }) as F;
}

/** V8's TypeError for a call of the class `exported` names (an anonymous class's says "Class constructors"). */
function calledAsClass(error: unknown, exported: (...args: never[]) => unknown): boolean {
  const className = classNameOf(exported);
  return error instanceof TypeError && error.message === (className ? `Class constructor ${className} cannot be invoked without 'new'` : "Class constructors cannot be invoked without 'new'");
}

/** The name of the class `exported` is, or calls: a bound class's own name is "bound Handler". */
function classNameOf(exported: (...args: never[]) => unknown): string {
  return String(exported.name).replace(/^(bound )+/, '');
}
