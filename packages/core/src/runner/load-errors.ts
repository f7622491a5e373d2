/**
 * A handler's module that failed to load, said in terms its author can act on: the file, what is
 * wrong with it and how to fix it, where Node's own error names no file or hides the cause.
 */
import { HandlerError } from '../errors.js';
import type { RunnerTask } from './handler-runtime.js';
import { mayLoadAsCommonJs, moduleTypeAdvice, commonJsAdvice } from './nearest-package.js';

const { fileURLToPath } = process.getBuiltinModule('node:url');
const path = process.getBuiltinModule('node:path');

/** The error to throw for `error`, met importing the handler's module `entryPath`: one of those below, or `error` as it is. */
export function loadError(error: unknown, entryPath: string, task: RunnerTask): unknown {
  return (
    moduleScopeError(error, entryPath, task) ??
    commonJsScopeError(error, entryPath, task) ??
    parseError(error, entryPath, task) ??
    typeScriptError(error, entryPath, task) ??
    jsonAttributeError(error, entryPath, task) ??
    vmImportError(error, entryPath, task) ??
    error
  );
}

/**
 * An in-process host whose code runs in a vm context that imports no modules: Jest runs each test
 * file, and the packages it requires, so, unless Node runs with --experimental-vm-modules. Every
 * handler then failed with Node's "A dynamic import callback was invoked without
 * --experimental-vm-modules", as if the plugin were at fault, and a CommonJS one too (handlers are
 * imported, never required). Say what it is, and the two ways out.
 */
function vmImportError(error: unknown, entryPath: string, task: RunnerTask): HandlerError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== 'ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING_FLAG' && code !== 'ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING') return undefined;
  return new HandlerError(
    `Handler "${task.handlerId}" of plugin "${task.pluginId}": ${entryPath} could not be imported: the host's code runs in a vm context that imports no modules ` +
      `(Jest runs test files so unless Node has --experimental-vm-modules: NODE_OPTIONS=--experimental-vm-modules npx jest), and the in-process backend imports each handler's module, a CommonJS one too. ` +
      `Run the host with that flag, or the plugin on the worker-pool or subprocess backend, which import it in a thread or process of their own`,
    { details: { name: 'TypeError', file: entryPath }, cause: error },
  );
}

/**
 * `module.exports`, `require` or `exports` in a file Node loads as an ES module (a `.js` file under
 * a package.json with `"type": "module"`) fails, when its code runs, with a ReferenceError whose
 * message says "This file" without naming it: say which, and how to fix it.
 */
function commonJsScopeError(error: unknown, entryPath: string, task: RunnerTask): HandlerError | undefined {
  const e = error as { name?: unknown; message?: unknown; stack?: unknown } | null;
  if (e?.name !== 'ReferenceError' || typeof e.message !== 'string' || !/^(module|require|exports|__dirname|__filename) is not defined in ES module scope/.test(e.message)) return undefined;
  const url = typeof e.stack === 'string' ? /(file:\/\/[^\s)]+?):\d+:\d+/.exec(e.stack)?.[1] : undefined;
  const file = url ? fileURLToPath(url) : entryPath;
  return new HandlerError(
    `Handler "${task.handlerId}" of plugin "${task.pluginId}": ${file} uses CommonJS (${e.message.split(' ', 1)[0]}) but Node loads it as an ES module. ${commonJsAdvice(file, task.pluginRoot)}`,
    { details: { name: 'ReferenceError', file }, cause: error },
  );
}

/**
 * A SyntaxError from loading a module: its message, its stack, and its "file:line" when it has one
 * (a CommonJS module's stack starts with it; an ES module's names none, except TypeScript that
 * Node cannot strip, whose stack starts with the module's URL: the file is said as a path all the same).
 */
function syntaxErrorOf(error: unknown): { message: string; stack: string; file?: string; line?: string } | undefined {
  const e = error as { name?: unknown; message?: unknown; stack?: unknown } | null;
  if (e?.name !== 'SyntaxError' || typeof e.message !== 'string') return undefined;
  const stack = typeof e.stack === 'string' ? e.stack : '';
  const at = /^(.+):(\d+)$/.exec(stack.split('\n', 1)[0]!);
  if (!at) return { message: e.message, stack };
  return { message: e.message, stack, file: at[1]!.startsWith('file:') ? fileURLToPath(at[1]!) : at[1]!, line: at[2]! };
}

/**
 * `import`/`export` in a file Node loads as CommonJS (a `.js` file whose nearest package.json has
 * no `"type": "module"`) fails with a bare SyntaxError; say what it is and how to fix it, with the
 * file (the handler's module or one it imports).
 */
function moduleScopeError(error: unknown, entryPath: string, task: RunnerTask): HandlerError | undefined {
  const syntax = syntaxErrorOf(error);
  const file = syntax && /Cannot use import statement outside a module|Unexpected token 'export'/.test(syntax.message) ? (syntax.file ?? entryPath) : requiredInCycle(error, entryPath);
  if (!file || !mayLoadAsCommonJs(file, task.pluginRoot)) return undefined;
  return new HandlerError(
    `Handler "${task.handlerId}" of plugin "${task.pluginId}": ${file} uses ES module syntax (import/export) but Node loads it as CommonJS. ${moduleTypeAdvice(file, task.pluginRoot)}`,
    { details: { name: 'SyntaxError', file }, cause: error },
  );
}

/**
 * The same mistake as Node reports it in a child run with the permission model (Node 20.19+): the
 * entry, loaded as CommonJS, is retried as an ES module through require(), which its own import()
 * makes a cycle (ERR_REQUIRE_CYCLE_MODULE naming the entry). The entry's path, or undefined.
 */
function requiredInCycle(error: unknown, entryPath: string): string | undefined {
  const e = error as { code?: unknown; message?: unknown } | null;
  if (e?.code !== 'ERR_REQUIRE_CYCLE_MODULE' || typeof e.message !== 'string' || !e.message.includes(` ${entryPath} in a cycle`)) return undefined;
  return entryPath;
}

/**
 * A module that does not parse: Node's SyntaxError for an ES module names no file, and a plugin
 * author has only "Unexpected token ';'" to go on. A SyntaxError thrown by the module's own code
 * (JSON.parse at load) has a frame in the plugin folder and is left as it is.
 */
function parseError(error: unknown, entryPath: string, task: RunnerTask): HandlerError | undefined {
  const syntax = syntaxErrorOf(error);
  if (!syntax?.stack || syntax.stack.split('\n').slice(1).some((frame) => frame.includes(task.pluginRoot))) return undefined;
  const where = syntax.file ? `${syntax.file}:${syntax.line}` : `${entryPath} (or a module it imports)`;
  // Node keeps an ES module's line to itself (it prints it only for an error nobody caught).
  const findLine = syntax.file ? '' : ` (Node names no line for an ES module: node --check <file> shows where, in ${entryPath} or a module it imports)`;
  return new HandlerError(`Handler "${task.handlerId}" of plugin "${task.pluginId}": ${where} does not parse: SyntaxError: ${syntax.message}${findLine}`, {
    details: { name: 'SyntaxError', file: syntax.file ?? entryPath },
    cause: error,
  });
}

/**
 * A TypeScript file on a Node that does not strip types (20; 22 before 22.18) fails with "Unknown
 * file extension", which does not say what to do.
 */
function typeScriptError(error: unknown, entryPath: string, task: RunnerTask): HandlerError | undefined {
  const e = error as { code?: unknown; message?: unknown } | null;
  if (e?.code !== 'ERR_UNKNOWN_FILE_EXTENSION' || typeof e.message !== 'string') return undefined;
  const file = /for (.+\.[cm]?ts)$/.exec(e.message)?.[1];
  if (!file) return undefined;
  // A Node that can strip types with stripping off (turned off, or not yet on by default before 22.18): the flag says it.
  const canStrip = (process.features as { typescript?: unknown }).typescript === false && process.allowedNodeEnvironmentFlags.has('--experimental-strip-types');
  const why = canStrip ? `which Node ${process.version} runs only with type stripping on (--experimental-strip-types; it is off here)` : `which Node ${process.version} does not run`;
  return new HandlerError(
    `Handler "${task.handlerId}" of plugin "${task.pluginId}": ${file} is TypeScript, ${why}. ` +
      `Build the plugin to JavaScript and point the handler's entry at the output (Node 22.18 and later run .ts files as they are)`,
    { details: { name: 'TypeError', file }, cause: error },
  );
}


/**
 * A JSON module imported without `with { type: 'json' }`: Node's TypeError names the JSON file, by
 * its URL, but neither the module that imports it nor the fix (ERR_IMPORT_ATTRIBUTE_MISSING; on
 * Node 20, ERR_IMPORT_ASSERTION_TYPE_MISSING).
 */
function jsonAttributeError(error: unknown, entryPath: string, task: RunnerTask): HandlerError | undefined {
  const e = error as { code?: unknown; message?: unknown } | null;
  if ((e?.code !== 'ERR_IMPORT_ATTRIBUTE_MISSING' && e?.code !== 'ERR_IMPORT_ASSERTION_TYPE_MISSING') || typeof e.message !== 'string') return undefined;
  const url = /^Module "(file:[^"]+\.json)" needs an import (attribute|assertion)/.exec(e.message)?.[1];
  if (!url) return undefined;
  const file = fileURLToPath(url);
  const relative = path.relative(path.dirname(entryPath), file).split(path.sep).join('/');
  const specifier = relative.startsWith('../') ? relative : `./${relative}`;
  return new HandlerError(
    `Handler "${task.handlerId}" of plugin "${task.pluginId}": ${file} is a JSON module, imported (by ${entryPath} or a module it imports) without the import attribute Node requires of one. ` +
      `Import it as import data from '${specifier}' with { type: 'json' }`,
    { details: { name: 'TypeError', file }, cause: error },
  );
}
