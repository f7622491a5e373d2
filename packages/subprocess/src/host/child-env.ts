import { SANDBOX_HOME } from './sandbox-identity.js';

/** What every child gets from the host's environment unless configured otherwise. */
export const DEFAULT_BASE_ENV: readonly string[] = ['PATH', 'SYSTEMROOT', 'TZ', 'LANG', 'LC_ALL'];

/**
 * Read by Node itself at start-up: in the base environment they could lift the permission
 * model (`NODE_OPTIONS=--allow-fs-read=*`), preload code or slow every start
 * (`NODE_EXTRA_CA_CERTS` costs ~30 ms). They never reach a child's start-up, whatever is configured.
 */
const STARTUP_SENSITIVE = new Set(['NODE_OPTIONS', 'NODE_PATH', 'NODE_EXTRA_CA_CERTS', 'NODE_REPL_EXTERNAL_MODULE', 'NODE_V8_COVERAGE', 'NODE_ICU_DATA']);

/** The environment a child boots with: the allow-listed names only, never the host's whole env. */
export function baseEnvironment(names: readonly string[], source: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of names) {
    if (STARTUP_SENSITIVE.has(name.toUpperCase())) continue;
    const value = lookup(source, name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/**
 * The variables a handler declared (`permissions.env`) and the host granted, with the host's
 * values. They are sent in the `run` message and set after Node has booted, so the same warm
 * spare serves any handler and none of them can change how Node starts.
 */
export function handlerEnvironment(names: readonly string[] | undefined, source: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of names ?? []) {
    const value = lookup(source, name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Environment names are case-insensitive on Windows. */
function lookup(source: NodeJS.ProcessEnv, name: string): string | undefined {
  if (Object.hasOwn(source, name)) return source[name];
  if (process.platform !== 'win32') return undefined;
  const upper = name.toUpperCase();
  for (const key of Object.keys(source)) if (key.toUpperCase() === upper) return source[key];
  return undefined;
}

/**
 * A sandboxed child's environment: a HOME the host configured (`baseEnv`) or granted (a declared
 * `env`) is the host's path, which the sandbox does not show, or shows read-only, and names the
 * host's user: the child's HOME is the sandbox's own instead, the home its /etc/passwd names.
 */
export function withSandboxHome(env: Record<string, string>): Record<string, string> {
  return Object.hasOwn(env, 'HOME') ? { ...env, HOME: SANDBOX_HOME } : env;
}
