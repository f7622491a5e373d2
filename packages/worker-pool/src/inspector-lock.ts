/**
 * Thread side: Node's inspector, closed to plugin code before any runs. From a thread, an
 * inspector Session (or a debugger connected through the port `inspector.open()` opens) reaches
 * every object of the thread's heap: the runtime's own state, and the shared buffer whose slots
 * are its word to the host (which execution it began, which it answered). Nothing of the runtime
 * uses the inspector; a plugin is debugged on the in-process or subprocess backend.
 */
import { syncBuiltinESMExports } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const apply = Reflect.apply;
const construct = Reflect.construct;

const MESSAGE =
  "node:inspector is closed to plugin code on a worker-pool thread: it would reach the runtime's own state. Debug a plugin on the in-process or subprocess backend";

function closed(): never {
  throw Object.assign(new Error(MESSAGE), { code: 'ERR_INSPECTOR_NOT_AVAILABLE' });
}

/**
 * A Worker's constructor arguments with its thread preloading `inspector-preload.cjs` (next to
 * this build's files), which closes that thread's inspector too, and passes itself on to the
 * Workers started there: a handler's own Worker would otherwise reach the host's main thread
 * through `connectToMainThread()`. First among its flags: Node runs `--require` preloads in the
 * order given, and one of the handler's own ahead of it ran while the inspector was still open.
 * A Worker given no flags gets this thread's, but for those in `leftOut`.
 */
function withInspectorClosed(args: unknown[], leftOut: ReadonlySet<string>): unknown[] {
  const [filename, options] = args as [unknown, { execArgv?: unknown } | undefined];
  const given = flagsGiven(options) ?? withoutFlags(threadFlags(), leftOut);
  return [filename, { ...options, execArgv: ['--require', PRELOAD, ...given] }, ...args.slice(2)];
}

/**
 * `new Original(...args)` (a Worker class; `adjust` changes its arguments further) with the
 * inspector closed in its thread (withInspectorClosed). A Worker given no flags inherits its
 * thread's, from which Node drops those that are the whole process's (`--max-old-space-size`,
 * `--expose-gc`, `--title`: a host's flags, which the pool's threads inherit); the preload makes
 * them flags given, which Node refuses instead (ERR_WORKER_INVALID_EXEC_ARGV, naming them, a few
 * at a time). Those are left out and the Worker made again, as inheriting would have had it.
 */
export function constructWithInspectorClosed(Original: Function, args: unknown[], newTarget: Function, adjust: (args: unknown[]) => unknown[] = (same) => same): object {
  const leftOut = new Set<string>();
  for (;;) {
    try {
      return construct(Original, adjust(withInspectorClosed(args, leftOut)), newTarget) as object;
    } catch (error) {
      // Only flags of this thread's not yet left out: at most as many rounds as it has flags.
      const refused = flagsGiven((args as [unknown, unknown])[1]) ? [] : refusedFlags(error).filter((flag) => !leftOut.has(flag) && threadFlags().includes(flag));
      if (refused.length === 0) throw error;
      for (const flag of refused) leftOut.add(flag);
    }
  }
}

let inherited: readonly string[] | undefined;

/** The pool thread's flags, as its host knows them (ThreadConfig.execArgv): what its Workers inherit. */
export function inheritFlags(flags: readonly string[]): void {
  inherited = flags;
}

/** This thread's flags: a pool thread's as its host said them, a Worker's started by a handler its own. */
function threadFlags(): readonly string[] {
  return inherited ?? process.execArgv;
}

function flagsGiven(options: unknown): unknown[] | undefined {
  const execArgv = options && typeof options === 'object' ? (options as { execArgv?: unknown }).execArgv : undefined;
  return Array.isArray(execArgv) ? execArgv : undefined;
}

/** The flags Node's ERR_WORKER_INVALID_EXEC_ARGV names ("… invalid execArgv flags: --a, --b=1"). */
function refusedFlags(error: unknown): string[] {
  if ((error as { code?: unknown })?.code !== 'ERR_WORKER_INVALID_EXEC_ARGV') return [];
  const listed = /flags: (.+)$/s.exec(String((error as Error).message))?.[1];
  return listed ? listed.split(', ') : [];
}

/** `flags` but those in `leftOut`, with their values given apart (`--title kb`: what follows a flag and is none). */
function withoutFlags(flags: readonly string[], leftOut: ReadonlySet<string>): string[] {
  const kept: string[] = [];
  let dropping = false;
  for (const flag of flags) {
    if (flag.startsWith('-')) dropping = leftOut.has(flag);
    if (!dropping) kept.push(flag);
  }
  return kept;
}

const PRELOAD = fileURLToPath(new URL('./inspector-preload.cjs', import.meta.url));

export function closeInspector(): void {
  for (const name of ['node:inspector', 'node:inspector/promises']) {
    const inspector = process.getBuiltinModule(name) as { open?: unknown; Session?: { prototype: Record<string, unknown> } };
    inspector.open = closed;
    if (inspector.Session) inspector.Session.prototype.connect = inspector.Session.prototype.connectToMainThread = closed;
  }
  // What Session is made of, reachable through the deprecated process.binding.
  const node = process as unknown as { binding(name: string): unknown };
  const binding = node.binding.bind(process);
  node.binding = (name: string) => (name === 'inspector' ? closed() : binding(name));
  // An `import 'node:inspector'` made from now on sees the closed ones.
  syncBuiltinESMExports();
}

/**
 * `module.register()` of a thread (`moduleApi`, before plugin code runs) loading
 * `inspector-preload.cjs` ahead of the first hooks a handler registers: Node runs module hooks on
 * a thread of its own, started with the pool thread's flags (no preload there), and from its
 * inspector `connectToMainThread()` ran code on the host's main thread (Node 20, 22 and 24).
 * Hooks load in the order registered, each before `register()` returns.
 */
export function closeHooksThreadInspector(moduleApi: Record<string, unknown>): void {
  const original = moduleApi.register;
  if (typeof original !== 'function') return;
  let preloaded = false;
  moduleApi.register = function register(this: unknown, ...args: unknown[]): unknown {
    if (!preloaded) {
      preloaded = true;
      apply(original, moduleApi, [pathToFileURL(PRELOAD).href]);
    }
    return apply(original, this, args);
  };
}
