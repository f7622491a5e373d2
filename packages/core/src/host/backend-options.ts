import type { z } from 'zod';
import type { ValidationIssue } from '../error-details.js';
import type { PermissionSpec } from './permissions.js';
import { lazySchema, zod } from './lazy-zod.js';
import { permissionSpecSchema } from './permissions.js';
import type { HostPlatform } from '../define-handler.js';
import { PluginRegistry, type PluginSource } from './plugin-registry.js';
import type { WatchOptions } from './plugin-watcher.js';
import { distinctIssues, formatPath, issueOf, keysAt, validationError, withinUnions } from '../validation.js';
import { MAX_TIMER_MS } from './deadlines.js';
import { meantBy, nearest, unknownKeyMessage } from './nearest-name.js';
import { backendKeyOfExecute, optionOfOtherBackends } from './backend-own-options.js';
import { WorkspaceManager } from './workspace-manager.js';
import { thrownText } from '../wire-value.js';

/** Options every backend accepts. Backend packages extend this with their own. */
export interface BackendOptions {
  /**
   * The host's services, reached by handlers as `ctx.platform` (permission-checked). Services
   * declared in `PlatformServices` are checked against their declaration. @default {}
   */
  platform?: HostPlatform | undefined;
  /**
   * Plugin folders (each with a kb.plugin.json) or `{ root, manifest }` objects. Loaded on first
   * use; a relative path is taken from the working directory when the backend is created. @default []
   */
  plugins?: readonly PluginSource[] | undefined;
  /** Share one registry between backends instead of `plugins`. @default a new PluginRegistry */
  registry?: PluginRegistry | undefined;
  /**
   * Per-execution directory: a WorkspaceManager, `{ root }` (a path or a `file:///` URL string; a relative root is taken
   * from the working directory when the backend is created), or `false` for none (`ctx.workspace` is then undefined).
   * @default a WorkspaceManager rooted in the OS temp directory
   */
  workspace?: WorkspaceManager | { root: string } | false | undefined;
  /** What the host grants when a request's `context.permissions` is absent. @default {} (nothing beyond the plugin folder and workspace) */
  permissions?: PermissionSpec | undefined;
  /** Time limit when neither the request nor the manifest sets one. @default 30000 */
  defaultTimeoutMs?: number | undefined;
  /** Executions running at once. @default backend-specific (in-process 64, worker-pool = maxThreads, subprocess = CPU count, queue 1000 in flight from this host) */
  maxConcurrency?: number | undefined;
  /** Executions allowed to wait for a slot; one more gets QUEUE_FULL at once. @default 1000 */
  maxQueue?: number | undefined;
  /** Executions of one plugin running at once. @default unlimited (up to maxConcurrency) */
  perPluginConcurrency?: number | undefined;
  /**
   * For development: reload a plugin (`reloadPlugin`) when files in its folder change, debounced;
   * node_modules and dot-folders are ignored. `true`, or `{ debounceMs, onReload }` to tune it and
   * hear of each reload. Folders are watched once the plugins are loaded (first use) and until
   * shutdown. See docs/plugins.md. @default false
   */
  watch?: boolean | WatchOptions | undefined;
}

export { MAX_TIMER_MS };
/** An execution's time limit when neither the call, its handler's manifest nor the backend's `defaultTimeoutMs` gives one. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * Schema pieces with messages a host can act on; backends build their option schemas from them
 * (inside a lazySchema: each call loads zod if it is not loaded yet).
 */
export const option = {
  /** An integer from `min` to `max`. */
  int: (min: number, max = MAX_TIMER_MS) => {
    const error = (issue: { input?: unknown }) => `must be an integer from ${min} to ${max}${given(issue.input)}`;
    return zod().number({ error }).int({ error }).min(min, { error }).max(max, { error });
  },
  /** A non-empty string without NUL. */
  text: () => zod().string({ error: 'must be a non-empty string' }).min(1, { error: 'must be a non-empty string' }).refine((s) => !s.includes('\0'), { error: 'must not contain NUL' }),
  /** An array of non-empty strings. */
  texts: () => {
    const z = zod();
    return z.array(z.string().min(1).refine((s) => !s.includes('\0')), { error: 'must be an array of non-empty strings' });
  },
  boolean: () => zod().boolean({ error: 'must be a boolean' }),
  /** A function (a hook or callback). */
  fn: <F extends (...args: never[]) => unknown = (...args: never[]) => unknown>() => zod().custom<F>((v) => typeof v === 'function', { error: 'must be a function' }),
  /** One of a few literal values. */
  oneOf: <const T extends readonly [string, ...string[]]>(values: T) => zod().enum(values, { error: (issue) => oneOfMessage(values, issue.input) }),
};

/**
 * How much of a handler's stdout and stderr a backend that captures them delivers (worker-pool,
 * subprocess): one check and one default for both, so that the two cannot drift apart.
 */
export const outputLimits = {
  schema: () => ({ maxOutputPerStream: option.int(0, 1_000_000_000).optional(), maxLogLineLength: option.int(80, 100_000_000).optional() }),
  resolve: (o: { maxOutputPerStream?: number; maxLogLineLength?: number }) => ({ maxOutputPerStream: o.maxOutputPerStream ?? 1_000_000, maxLogLineLength: o.maxLogLineLength ?? 16_384 }),
};

/** ", got 1.5" (what an option was given, as the caller would write it), or nothing when the input is not at hand. */
function given(input: unknown): string {
  if (input === undefined) return '';
  if (typeof input === 'string') return `, got ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`;
  if (typeof input === 'bigint') return `, got a bigint (${String(input)}n)`;
  if (typeof input === 'number' || typeof input === 'boolean' || input === null) return `, got ${String(input)}`;
  return `, got ${Array.isArray(input) ? 'an array' : typeof input === 'object' ? 'an object' : `a ${typeof input}`}`;
}

/** The `plugins` option (of every backend, and of a queue worker): plugin folders as paths or file: URLs, or `{ root, manifest }`. */
export const pluginSourcesSchema = lazySchema((z) =>
  z.array(
    z.union([z.string().min(1, { error: 'must not be empty' }), z.instanceof(URL), z.object({ root: z.string().min(1, { error: 'must not be empty' }), manifest: z.unknown() }).strict()], {
      error: 'must be a plugin folder (a path or file: URL) or { root, manifest }',
    }),
    { error: 'must be an array of plugin folders (paths or file: URLs) or { root, manifest } objects' },
  ),
);

/**
 * The options every backend accepts, for backends to `.extend()` with their own (in a lazySchema
 * of their own, so that importing the backend loads no zod). Built on the first call.
 */
export const backendOptionsSchema = lazySchema((z) =>
  z.object({
    platform: z.record(z.string(), z.unknown(), { error: 'must be an object of services' }).optional(),
    plugins: pluginSourcesSchema().optional(),
    registry: z.instanceof(PluginRegistry, { error: (issue) => `must be a PluginRegistry${otherCopy(issue.input, 'PluginRegistry')}` }).optional(),
    workspace: z
      .union([z.instanceof(WorkspaceManager), z.object({ root: z.string().min(1) }).strict(), z.literal(false)], {
        error: (issue) => `must be a WorkspaceManager, { root } (a directory; nothing else), or false${otherCopy(issue.input, 'WorkspaceManager')}`,
      })
      .optional(),
    permissions: permissionSpecSchema().optional(),
    defaultTimeoutMs: option.int(1).optional(),
    maxConcurrency: option.int(1, 100_000).optional(),
    maxQueue: option.int(0, 10_000_000).optional(),
    perPluginConcurrency: option.int(1, 100_000).optional(),
    watch: z
      .union([option.boolean(), z.object({ debounceMs: option.int(0, 60_000).optional(), onReload: option.fn<NonNullable<WatchOptions['onReload']>>().optional() }).strict()], {
        error: 'must be a boolean or { debounceMs?, onReload? }',
      })
      .optional(),
  }),
);

/** Said of a `name` made by another copy of this package (two versions installed): instanceof tells them apart. */
function otherCopy(input: unknown, name: string): string {
  const made = (input as { constructor?: { name?: unknown } } | null)?.constructor?.name;
  return made === name
    ? `; this one comes from another copy of @kb-labs/plugin-execution-core (two versions installed, or its CommonJS and ES builds mixed: require() in one place, import in another): make it with the one the backend imports`
    : '';
}

/**
 * Validate options with their schema, one way for every backend (and the channel mount): every problem is named
 * with its path, and an option the schema does not know is refused with the nearest known name
 * (`prespwn` → "did you mean \"prespawn\"?"), never silently ignored. `backendOptions`: a backend's
 * own options, where one of another backend type is said as that (backend-own-options.ts).
 * `elsewhere`: where a top-level key these options do not take goes instead, as a whole phrase
 * (a queue worker given its host's `queueBound`), or undefined.
 */
export function parseOptions<S extends z.ZodObject>(
  schema: S,
  value: unknown,
  subject: string,
  backendOptions = false,
  elsewhere: (key: string) => string | undefined = () => undefined,
): z.output<S> {
  let result: ReturnType<S['safeParse']>;
  try {
    // Left out is none given; null is a mistake (a setting read as null), refused as any non-object.
    result = schema.strict().safeParse(value === undefined ? {} : value, { reportInput: true }) as ReturnType<S['safeParse']>;
  } catch (error) {
    // A getter or a Proxy among the options threw as it was read: named by where it is.
    const found = unreadableAt(value, '') ?? { path: '(options)', error };
    throw validationError(`Invalid ${subject}`, [{ path: found.path, message: `could not be read: ${thrownText(found.error)}` }], { phase: 'options' });
  }
  // `.strict()` changes what is accepted, not what comes out.
  if (result.success) return result.data as z.output<S>;
  const issues: ValidationIssue[] = withinUnions(result.error.issues).flatMap((issue): ValidationIssue[] => {
    if (issue.code !== 'unrecognized_keys') return [issueOf(issue)];
    const known = keysAt(schema, issue.path);
    return issue.keys.map((key) => {
      // At the top, an option of another backend type is said as that, before any near name; one
      // of execute() or of the request is said as that, with the near name (`timeoutMs`).
      const top = backendOptions && issue.path.length === 0;
      const other = top ? optionOfOtherBackends(key) : undefined;
      const given = issue.path.length === 0 ? elsewhere(key) : undefined;
      if (given) return { path: formatPath([key]), message: unknownKeyMessage(given, undefined) };
      // Said as theirs, and as what it is here when it is another pool's name for one of ours (subprocess `env` → `baseEnv`).
      if (other) return { path: formatPath([...issue.path, key]), message: unknownKeyMessage(`not an option of this backend; it is ${other}`, meantBy(key, known)) };
      return { path: formatPath([...issue.path, key]), message: unknownKeyMessage(top ? backendKeyOfExecute(key) : undefined, nearest(key, known)) };
    });
  });
  throw validationError(`Invalid ${subject}`, distinctIssues(issues), { phase: 'options' });
}

/** "must be one of 'a', 'b'", with what was given and, for a string close to one, that one (`worker-pol` → "did you mean 'worker-pool'?"). */
function oneOfMessage(values: readonly string[], input: unknown): string {
  const allowed = `must be one of ${values.map((v) => `'${v}'`).join(', ')}`;
  if (typeof input !== 'string') return input === undefined ? allowed : `${allowed}, got ${input === null ? 'null' : typeof input}`;
  const near = input.length > 2 ? nearest(input, values) : undefined;
  const given = input.length > 40 ? `${input.slice(0, 40)}…` : input;
  return `${allowed}, got '${given}'${near ? `; did you mean '${near}'?` : ''}`;
}

/** The first property under `value` whose read throws (a getter, a Proxy's trap), breadth first, not too deep; undefined if all read. */
function unreadableAt(value: unknown, at: string): { path: string; error: unknown } | undefined {
  const seen = new Set<object>();
  let level: Array<[unknown, string]> = [[value, at]];
  for (let depth = 0; depth < 8 && level.length > 0; depth++) {
    const next: Array<[unknown, string]> = [];
    for (const [object, where] of level) {
      if (object === null || (typeof object !== 'object' && typeof object !== 'function') || seen.has(object)) continue;
      seen.add(object);
      let keys: string[];
      try {
        keys = Object.keys(object);
      } catch (error) {
        return { path: where || '(options)', error };
      }
      for (const key of keys) {
        const path = formatPath([Array.isArray(object) ? Number(key) : key], where);
        try {
          next.push([(object as Record<string, unknown>)[key], path]);
        } catch (error) {
          return { path, error };
        }
      }
    }
    level = next;
  }
  return undefined;
}
