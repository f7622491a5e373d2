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
 */
export function withInspectorClosed(args: unknown[]): unknown[] {
  const [filename, options] = args as [unknown, { execArgv?: unknown } | undefined];
  const given = options && typeof options === 'object' && Array.isArray(options.execArgv) ? (options.execArgv as unknown[]) : process.execArgv;
  return [filename, { ...options, execArgv: ['--require', PRELOAD, ...given] }, ...args.slice(2)];
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
