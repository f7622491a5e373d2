import path from 'node:path';
import type { z } from 'zod';
import { channelPathParts, repeatedParam } from './channel-path.js';
import { MAX_TIMER_MS } from './deadlines.js';
import { lazySchema } from './lazy-zod.js';
import { CONTROLS_BEYOND_C0 } from '../shown-controls.js';
import { declaredPathProblems, permissionSpecSchema } from './permissions.js';

/**
 * A plugin version: one line, not blank, no space at either end, and no control character (an
 * escape sequence, a C1 control, a bidirectional override): it is quoted in messages a terminal shows.
 */
const VERSION = new RegExp(`^(?!.*[\\u0000-\\u001f${CONTROLS_BEYOND_C0}])\\S(.*\\S)?$`);

/** The manifest's file name inside a plugin folder. */
export const MANIFEST_FILE = 'kb.plugin.json';

/** The longest plugin id a manifest takes (npm's longest package name). */
export const MAX_PLUGIN_ID_LENGTH = 214;

export const pluginIdSchema = lazySchema((z) =>
  z
    .string()
    .max(MAX_PLUGIN_ID_LENGTH)
    .regex(/^(@[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/, 'must be a package-style id such as "@my-org/my-plugin"'),
);

export const handlerIdSchema = lazySchema((z) =>
  z
    .string()
    .max(128)
    .regex(/^[A-Za-z0-9][\w.:-]*$/, 'must start with a letter or digit and use only letters, digits, ".", "_", ":" and "-"'),
);

export const handlerSpecSchema = lazySchema((z) => {
  const entryPath = z
    .string()
    .min(1)
    .refine((p) => !p.includes('\0'), 'must not contain NUL')
    .refine((p) => !path.isAbsolute(p) && !path.win32.isAbsolute(p), 'must be relative to the plugin folder')
    // A manifest is read alike on every OS: on Linux, dist\run.mjs would name one file called that.
    .regex(/^[^\\]*$/, 'must use "/" between folders, not "\\" (as "./dist/run.mjs")')
    .refine((p) => {
      // `..` alone (or `a/../..`) normalises to `..` without a trailing slash and names the parent folder.
      const n = path.posix.normalize(p.replaceAll('\\', '/'));
      return n !== '..' && !n.startsWith('../');
    }, 'must stay inside the plugin folder')
    // What of the above a JSON Schema can say, for editors: no ".." first, not absolute, no "\\" nor NUL, not "." nor a folder ("dist/").
    .meta({ pattern: /^(?!(?:\.\/)*\.\.(?:\/|$))(?!(?:\.\/)*\.?\/?$)(?!\/)(?![A-Za-z]:\/)(?!.*\/$)[^\\\x00]*$/.source });
  return z.strictObject({
    /** Module path relative to the plugin folder (ESM or CJS). */
    entry: entryPath.describe('Module file relative to the plugin folder (ES module or CommonJS).'),
    /** Export to call. @default "default" */
    export: z.string().regex(/^[A-Za-z_$][\w$]*$/, 'must be an export name').default('default').describe('The export of the module to call.'),
    /** Per-handler time limit; a request's `timeoutMs` overrides it. */
    timeoutMs: z.number().int().positive().max(MAX_TIMER_MS).optional().describe("Time limit in ms; a request's timeoutMs overrides it."),
    /** Heap limit for backends that can enforce one (worker-pool, subprocess). */
    memoryMb: z.number().int().min(8).max(65_536).optional().describe('Heap limit in MB, on backends that can enforce one (worker-pool, subprocess).'),
    /** Merged over the plugin-level permissions. */
    permissions: permissionSpecSchema().optional().describe("Merged over the plugin's permissions for this handler."),
    description: z.string().max(10_000).optional(),
  });
});

/**
 * A channel's path: "/"-separated segments, each a literal or a whole ":name" parameter. A segment
 * no request can carry ("." or "..", which clients resolve away, an empty one) or a ":" that names
 * no parameter would be mounted and never matched.
 */
const CHANNEL_SEGMENT = String.raw`(?::[A-Za-z_]\w*|(?!\.\.?(?:\/|$))[\w\-.][\w\-.:]*)`;
const CHANNEL_PATH = new RegExp(String.raw`^\/(?:${CHANNEL_SEGMENT}(?:\/${CHANNEL_SEGMENT})*\/?)?$`);
const CHANNEL_PATH_RULE = 'must be a URL path starting with "/" whose segments are names (letters, digits, "_", "-", ".", ":"; not "." or "..") or ":param" parameters, e.g. "/rooms/:room"';

export const channelSpecSchema = lazySchema((z) =>
  z.strictObject({
    /** URL path the channel is mounted on, e.g. "/chat". */
    path: z.string().regex(CHANNEL_PATH, CHANNEL_PATH_RULE).describe('URL path the channel is mounted on, e.g. "/chat" (":name" segments are parameters).'),
    /** Handler id (in this manifest) that serves connect, message and disconnect. */
    handler: handlerIdSchema().describe('The handler (in this manifest) that serves connect, message and disconnect.'),
    /** Largest accepted message in bytes. @default 1 MiB */
    maxPayload: z.number().int().positive().max(100 * 1024 * 1024).optional().describe('Largest accepted message in bytes (default 1 MiB).'),
    /**
     * `required`: the host's `authenticate` hook must accept the upgrade with an identity, else 401
     * (also when the host has no hook). `optional`: the hook runs if the host has one.
     * @default "optional"
     */
    auth: z.enum(['required', 'optional']).optional().describe('"required": the host must authenticate the upgrade, else 401; "optional" (default): its hook runs if it has one.'),
    /** Messages of one connection handled at once; 1 keeps them in order. @default 1 */
    concurrency: z.number().int().min(1).max(1024).optional().describe('Messages of one connection handled at once (default 1: in order).'),
    /** Messages of one connection running or waiting; one more gets a QUEUE_FULL error frame. @default 16 */
    maxInFlight: z.number().int().min(1).max(100_000).optional().describe('Messages of one connection running or waiting; one more gets a QUEUE_FULL error frame (default 16).'),
    /** Time limit of each connect/message/disconnect execution; overrides the handler's `timeoutMs`. */
    timeoutMs: z.number().int().positive().max(MAX_TIMER_MS).optional().describe("Time limit of each connect/message/disconnect execution; overrides the handler's."),
    description: z.string().max(10_000).optional(),
  }),
);

/** The schema of a plugin manifest (kb.plugin.json), built on the first call (zod loads then); PluginRegistry validates with it. */
export const pluginManifestSchema = lazySchema((z) =>
  z
    .strictObject({
      /** The JSON Schema an editor checks the file against (core ships it: kb.plugin.schema.json); ignored at run time. */
      $schema: z.string().optional(),
      id: pluginIdSchema().describe('The plugin id callers name in execute(), e.g. "@my-org/my-plugin".'),
      version: z
        .string()
        .min(1)
        .max(256)
        .regex(VERSION, 'must be one line, not blank, and not start or end with a space, with no control characters (a queue worker compares it with the host\'s as it is)')
        .describe('The plugin version (a queue worker refuses a version other than the host\'s).'),
      description: z.string().max(10_000).optional(),
      permissions: permissionSpecSchema().optional().describe('What every handler of the plugin needs (least privilege): platform services, files, env, network, child processes.'),
      handlers: z
        .record(handlerIdSchema(), handlerSpecSchema())
        .refine((h) => Object.keys(h).length > 0, 'must declare at least one handler')
        // The refinement, as the JSON Schema (editors) can say it.
        .meta({ minProperties: 1 })
        .describe('Handler id → where its code is and what it needs.'),
      channels: z.array(channelSpecSchema()).optional().describe('WebSocket channels served by handlers of this plugin.'),
    })
    .superRefine(
      (manifest, ctx) => {
        // Runs even when other fields failed (see `when`), so that one report names every problem:
        // the value may then be partly unparsed, hence the defensive reads.
        const handlers: unknown = manifest?.handlers;
        const channels: unknown = manifest?.channels;
        for (const issue of declaredPathProblems(declaredSpecs(manifest), loadedFiles(manifest))) ctx.addIssue({ code: 'custom', ...issue });
        for (const issue of channelPathClashes(channels)) ctx.addIssue({ code: 'custom', ...issue });
        if (!Array.isArray(channels) || typeof handlers !== 'object' || handlers === null || Array.isArray(handlers)) return;
        channels.forEach((channel: unknown, index) => {
          const handler = typeof channel === 'object' && channel !== null ? (channel as { handler?: unknown }).handler : undefined;
          // A missing or malformed `handler` has its own issue already.
          if (typeof handler !== 'string' || !handlerIdSchema().safeParse(handler).success || Object.hasOwn(handlers, handler)) return;
          ctx.addIssue({
            code: 'custom',
            path: ['channels', index, 'handler'],
            message: `names handler ${JSON.stringify(handler.slice(0, 200))}, which is not in "handlers"`,
          });
        });
      },
      { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
    ),
);

/**
 * Channel paths that could never be mounted: one that repeats a parameter name, or one that
 * matches the same URLs as an earlier channel (`/rooms/:id` and `/rooms/:name`). The mount
 * refuses them; said here, a plugin with them fails to register instead.
 */
function channelPathClashes(channels: unknown): Array<{ path: Array<string | number>; message: string }> {
  if (!Array.isArray(channels)) return [];
  const issues: Array<{ path: Array<string | number>; message: string }> = [];
  const shapes = new Map<string, number>();
  channels.forEach((channel: unknown, index) => {
    const channelPath = typeof channel === 'object' && channel !== null ? (channel as { path?: unknown }).path : undefined;
    if (typeof channelPath !== 'string') return;
    const parts = channelPathParts(channelPath);
    const repeated = repeatedParam(parts);
    if (repeated !== undefined) issues.push({ path: ['channels', index, 'path'], message: `repeats the parameter name ":${repeated.slice(0, 100)}"` });
    const earlier = shapes.get(parts.shape);
    if (earlier === undefined) shapes.set(parts.shape, index);
    else issues.push({ path: ['channels', index, 'path'], message: `matches the same URLs as channels[${earlier}].path (parameter names aside): a path is served by one channel` });
  });
  return issues;
}

/** The manifest's permission specs (plugin-level, then each handler's), with where each is. */
function declaredSpecs(manifest: { permissions?: unknown; handlers?: unknown } | undefined): Array<{ at: Array<string | number>; spec: unknown }> {
  const specs: Array<{ at: Array<string | number>; spec: unknown }> = [{ at: ['permissions'], spec: manifest?.permissions }];
  const handlers = manifest?.handlers;
  if (typeof handlers !== 'object' || handlers === null || Array.isArray(handlers)) return specs;
  for (const [id, handler] of Object.entries(handlers)) specs.push({ at: ['handlers', id, 'permissions'], spec: (handler as { permissions?: unknown } | null)?.permissions });
  return specs;
}

/**
 * The files the host loads from the plugin folder, as the manifest names them (relative, `/`):
 * the manifest, the root package.json, each handler's entry and the package.json files on the
 * way to it (the nearest says whether it is an ES module). A declared write folder may hold none.
 */
function loadedFiles(manifest: { handlers?: unknown } | undefined): Array<{ file: string; what: string }> {
  const files = [{ file: MANIFEST_FILE, what: 'the manifest' }, { file: 'package.json', what: 'the package.json' }];
  const handlers = manifest?.handlers;
  if (typeof handlers !== 'object' || handlers === null || Array.isArray(handlers)) return files;
  for (const [id, handler] of Object.entries(handlers)) {
    const entry = (handler as { entry?: unknown } | null)?.entry;
    if (typeof entry !== 'string' || entry.length === 0) continue;
    const file = path.posix.normalize(entry.replaceAll('\\', '/')).replace(/^\.\//, '');
    files.push({ file, what: `handler "${id}"'s code (${entry})` });
    for (let dir = path.posix.dirname(file); dir !== '.' && dir !== '/' && !dir.startsWith('..'); dir = path.posix.dirname(dir)) {
      files.push({ file: `${dir}/package.json`, what: `the package.json of handler "${id}"'s code` });
    }
  }
  return files;
}

/** Every fs.write path a (validated) manifest declares, the plugin's and its handlers', as written. */
export function declaredWriteFolders(manifest: PluginManifest): string[] {
  const specs = [manifest.permissions, ...Object.values(manifest.handlers).map((spec) => spec.permissions)];
  return specs.flatMap((spec) => spec?.fs?.write ?? []);
}

export type PluginManifest = z.output<ReturnType<typeof pluginManifestSchema>>;
export type PluginManifestInput = z.input<ReturnType<typeof pluginManifestSchema>>;
export type HandlerSpec = z.output<ReturnType<typeof handlerSpecSchema>>;
export type ChannelSpec = z.output<ReturnType<typeof channelSpecSchema>>;
