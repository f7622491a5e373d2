import path from 'node:path';
import { BackendNotInstalledError } from '../errors.js';
import type { IExecutionBackend } from '../types.js';
import { thrownText } from '../wire-value.js';
import type { BackendOptions } from './backend-options.js';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
const { existsSync, readFileSync } = process.getBuiltinModule('node:fs');
const { createRequire } = process.getBuiltinModule('node:module');
const { pathToFileURL } = process.getBuiltinModule('node:url');

/** The npm package that implements each backend type, and the class it exports. */
export const BACKEND_PACKAGES = {
  'in-process': '@kb-labs/plugin-execution-in-process',
  'worker-pool': '@kb-labs/plugin-execution-worker-pool',
  subprocess: '@kb-labs/plugin-execution-subprocess',
  queue: '@kb-labs/plugin-execution-queue',
} as const;

const CLASS_NAMES = { 'in-process': 'InProcessBackend', 'worker-pool': 'WorkerPoolBackend', subprocess: 'SubprocessBackend', queue: 'QueueBackend' } as const;

/** The backend types `createExecutionBackend` knows. */
export type BuiltInBackendType = keyof typeof BACKEND_PACKAGES;

export type BackendConstructor = new (options: BackendOptions & Record<string, unknown>) => IExecutionBackend;

/** Loads a backend's class; rejects with BackendNotInstalledError when its package is missing or broken. */
export type BackendLoader = (type: BuiltInBackendType) => Promise<BackendConstructor>;

/** What every backend class has: one of another version without them would throw from execute() (which never throws) or stats(). */
const BACKEND_CLASS_METHODS = ['execute', 'stats', 'health', 'shutdown'] as const;

/** The backend class in a loaded backend package. */
function backendClassOf(mod: unknown, type: BuiltInBackendType): BackendConstructor {
  const Backend = (mod as Record<string, unknown>)[CLASS_NAMES[type]];
  if (typeof Backend !== 'function') throw new TypeError(`the package does not export ${CLASS_NAMES[type]}`);
  const prototype = (Backend as { prototype?: Record<string, unknown> }).prototype;
  const missing = BACKEND_CLASS_METHODS.find((method) => typeof prototype?.[method] !== 'function');
  if (missing) throw new TypeError(`its ${CLASS_NAMES[type]} has no ${missing}() (a version of the package this core does not know: install matching versions)`);
  return Backend as BackendConstructor;
}

/**
 * Loads each backend's class once per process through `importPackage` (which imports the
 * package of a type); a failure becomes BackendNotInstalledError and is tried again on next use.
 */
export function backendLoader(importPackage: (type: BuiltInBackendType) => Promise<unknown>): BackendLoader {
  const loaded = new Map<BuiltInBackendType, Promise<BackendConstructor>>();
  return (type) => {
    let loading = loaded.get(type);
    if (!loading) {
      loading = importPackage(type)
        .then((mod) => backendClassOf(mod, type))
        .catch((error: unknown) => {
          loaded.delete(type);
          throw backendLoadError(type, error);
        });
      loaded.set(type, loading);
    }
    return loading;
  };
}

/**
 * Why a backend package did not load: BACKEND_NOT_INSTALLED `not-installed` with the command that
 * adds it when the package itself cannot be found, `load-failed` with its own message otherwise
 * (a package that is there but broken, or one of its own dependencies missing).
 */
export function backendLoadError(type: BuiltInBackendType, error: unknown, what = `The "${type}" backend`): BackendNotInstalledError {
  const pkg = BACKEND_PACKAGES[type];
  if (isMissingPackage(error, pkg)) {
    return new BackendNotInstalledError(`${what} needs the package ${pkg}, which is not installed. Add it: ${installCommand(pkg)}`, {
      details: { type, package: pkg, reason: 'not-installed' },
      cause: error,
    });
  }
  // (A thrown value with no text, Object.create(null), is said, not a TypeError in its place.)
  const said = thrownText(error);
  // esbuild's ES output of a CommonJS dependency: the package was bundled into the host's file.
  const bundled = /^Dynamic require of ".*" is not supported/.test(said) ? `; it was bundled into the host's own file: ${KEEP_EXTERNAL}` : '';
  return new BackendNotInstalledError(`${what} (${pkg}) failed to load: ${said}${bundled}`, {
    details: { type, package: pkg, reason: 'load-failed' },
    cause: error,
  });
}

/** The resolution error is about `pkg` itself, not a module inside it or one of its dependencies. */
function isMissingPackage(error: unknown, pkg: string): boolean {
  let code: unknown;
  try {
    code = (error as NodeJS.ErrnoException | null | undefined)?.code;
  } catch {
    return false; // (a getter that throws: no resolution error of Node's)
  }
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false;
  const message = thrownText(error);
  // `pkg/package.json` is what the fallback resolves in the ES build (importFrom).
  return message.includes(`'${pkg}'`) || message.includes(`'${pkg}/package.json'`) || (message.includes(pkg) && !message.includes(`${pkg}/`));
}

/** The lock file each package manager keeps at its project's root. */
const LOCK_FILES: ReadonlyArray<[file: string, manager: string]> = [
  ['pnpm-lock.yaml', 'pnpm'],
  ['yarn.lock', 'yarn'],
  ['bun.lock', 'bun'],
  ['bun.lockb', 'bun'],
  ['package-lock.json', 'npm'],
];

/**
 * How to add `pkg` with the package manager running this process (npm, pnpm, yarn and bun set
 * `npm_config_user_agent` for the scripts they run); run by `node` itself, with the one whose
 * lock file the running script's project (or the working directory's) has; npm's otherwise.
 */
export function installCommand(pkg: string, userAgent = process.env.npm_config_user_agent): string {
  const script = process.argv[1] ? path.dirname(path.resolve(process.argv[1])) : undefined;
  const manager = /^(pnpm|yarn|bun|npm)\//.exec(userAgent ?? '')?.[1] ?? (script && lockFileManager(script)) ?? lockFileManager(process.cwd());
  return manager && manager !== 'npm' ? `${manager} add ${pkg}` : `npm install ${pkg}`;
}

/** The package manager (`pnpm`, `yarn`, `bun`, `npm`) whose lock file is nearest at or above `folder`, if any is. */
export function lockFileManager(folder: string): string | undefined {
  for (let dir: string | undefined = path.resolve(folder); dir; dir = path.dirname(dir) === dir ? undefined : path.dirname(dir)) {
    const found = LOCK_FILES.find(([file]) => existsSync(path.join(dir!, file)));
    if (found) return found[1];
  }
  return undefined;
}

/** What a host bundled with the packages in it is told to do. */
const KEEP_EXTERNAL = "keep '@kb-labs/*' external in the bundler (esbuild --external:'@kb-labs/*', webpack externals, Rollup external) and install the packages beside the bundle";

/** True in the CommonJS build, whose chunks are `.cjs` files (tsup shims `import.meta.url` there). */
const commonJs = ownModuleUrl().endsWith('.cjs');

/**
 * This module's URL. A bundler that writes core into a CommonJS bundle of the host's leaves
 * `import.meta` empty, and core finds nothing of its own there (zod, the backends, the runners'
 * entry files): said at load, naming the fix, rather than as a TypeError from inside core.
 */
function ownModuleUrl(): string {
  const url: unknown = import.meta.url;
  if (typeof url === 'string') return url;
  throw new Error(
    `@kb-labs/plugin-execution-core was bundled into a CommonJS file, where import.meta.url is empty and it cannot find its own files: ${KEEP_EXTERNAL}`,
  );
}

/**
 * Import a backend package for core's own `createExecutionBackend`: first as core itself resolves
 * it (npm's flat node_modules), then from the project of the running script and from the working
 * directory (pnpm's layout, where core sees only its own dependencies). The CommonJS build
 * requires the package's CommonJS build and the ES build imports its ES build, so the backend
 * shares this copy of core and errors stay instances of the host's classes.
 */
export async function importBackendPackage(type: BuiltInBackendType): Promise<unknown> {
  const pkg = BACKEND_PACKAGES[type];
  const script = process.argv[1] ? path.dirname(path.resolve(process.argv[1])) : undefined;
  const attempts = [() => (commonJs ? createRequire(import.meta.url)(pkg) : import(pkg))];
  for (const base of new Set([script, process.cwd()])) if (base) attempts.push(() => importFrom(pkg, base));
  let firstError: unknown;
  for (const attempt of attempts) {
    try {
      return await attempt();
    } catch (error) {
      if (!isMissingPackage(error, pkg)) throw error;
      firstError ??= error;
    }
  }
  throw firstError;
}

async function importFrom(pkg: string, base: string): Promise<unknown> {
  const requireHere = createRequire(path.join(base, 'noop.js'));
  if (commonJs) return requireHere(pkg);
  const root = path.dirname(requireHere.resolve(`${pkg}/package.json`));
  const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { exports?: { '.'?: { import?: { default?: string } } }; module?: string };
  const entry = manifest.exports?.['.']?.import?.default ?? manifest.module;
  if (!entry) throw new TypeError(`${pkg} has no ES module entry`);
  return import(pathToFileURL(path.join(root, entry)).href);
}
