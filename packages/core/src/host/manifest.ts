import path from 'node:path';
import { z } from 'zod';
import { PermissionSpecSchema } from './permissions.js';

/** The manifest's file name inside a plugin folder. */
export const MANIFEST_FILE = 'kb.plugin.json';

const MAX_TIMEOUT_MS = 2_147_483_647;

export const PluginIdSchema = z
  .string()
  .max(214)
  .regex(/^(@[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/, 'must be a package-style id such as "@my-org/my-plugin"');

export const HandlerIdSchema = z
  .string()
  .max(128)
  .regex(/^[A-Za-z0-9][\w.:-]*$/, 'must start with a letter or digit and use only letters, digits, ".", "_", ":" and "-"');

const entryPath = z
  .string()
  .min(1)
  .refine((p) => !p.includes('\0'), 'must not contain NUL')
  .refine((p) => !path.isAbsolute(p) && !path.win32.isAbsolute(p), 'must be relative to the plugin folder')
  .refine((p) => {
    // `..` alone (or `a/../..`) normalises to `..` without a trailing slash and names the parent folder.
    const n = path.posix.normalize(p.replaceAll('\\', '/'));
    return n !== '..' && !n.startsWith('../');
  }, 'must stay inside the plugin folder');

export const HandlerSpecSchema = z.strictObject({
  /** Module path relative to the plugin folder (ESM or CJS). */
  entry: entryPath,
  /** Export to call. @default "default" */
  export: z.string().regex(/^[A-Za-z_$][\w$]*$/, 'must be an export name').default('default'),
  /** Per-handler time limit; a request's `timeoutMs` overrides it. */
  timeoutMs: z.number().int().positive().max(MAX_TIMEOUT_MS).optional(),
  /** Heap limit for backends that can enforce one (worker-pool, subprocess). */
  memoryMb: z.number().int().min(8).max(65_536).optional(),
  /** Merged over the plugin-level permissions. */
  permissions: PermissionSpecSchema.optional(),
  description: z.string().max(10_000).optional(),
});

export const ChannelSpecSchema = z.strictObject({
  /** URL path the channel is mounted on, e.g. "/chat". */
  path: z.string().regex(/^\/[\w\-./:]*$/, 'must be a URL path starting with "/"'),
  /** Handler id (in this manifest) that serves connect, message and disconnect. */
  handler: HandlerIdSchema,
  /** Largest accepted message in bytes. @default 1 MiB */
  maxPayload: z.number().int().positive().max(100 * 1024 * 1024).optional(),
  /**
   * `required`: the host's `authenticate` hook must accept the upgrade with an identity, else 401
   * (also when the host has no hook). `optional`: the hook runs if the host has one.
   * @default "optional"
   */
  auth: z.enum(['required', 'optional']).optional(),
  /** Messages of one connection handled at once; 1 keeps them in order. @default 1 */
  concurrency: z.number().int().min(1).max(1024).optional(),
  /** Messages of one connection running or waiting; one more gets a QUEUE_FULL error frame. @default 16 */
  maxInFlight: z.number().int().min(1).max(100_000).optional(),
  /** Time limit of each connect/message/disconnect execution; overrides the handler's `timeoutMs`. */
  timeoutMs: z.number().int().positive().max(MAX_TIMEOUT_MS).optional(),
  description: z.string().max(10_000).optional(),
});

export const PluginManifestSchema = z
  .object({
    id: PluginIdSchema,
    version: z.string().min(1).max(256),
    description: z.string().max(10_000).optional(),
    permissions: PermissionSpecSchema.optional(),
    handlers: z
      .record(HandlerIdSchema, HandlerSpecSchema)
      .refine((h) => Object.keys(h).length > 0, 'must declare at least one handler'),
    channels: z.array(ChannelSpecSchema).optional(),
  })
  .superRefine(
    (manifest, ctx) => {
      // Runs even when other fields failed (see `when`), so that one report names every problem:
      // the value may then be partly unparsed, hence the defensive reads.
      const handlers: unknown = manifest?.handlers;
      const channels: unknown = manifest?.channels;
      if (!Array.isArray(channels) || typeof handlers !== 'object' || handlers === null || Array.isArray(handlers)) return;
      channels.forEach((channel: unknown, index) => {
        const handler = typeof channel === 'object' && channel !== null ? (channel as { handler?: unknown }).handler : undefined;
        // A missing or malformed `handler` has its own issue already.
        if (typeof handler !== 'string' || !HandlerIdSchema.safeParse(handler).success || Object.hasOwn(handlers, handler)) return;
        ctx.addIssue({
          code: 'custom',
          path: ['channels', index, 'handler'],
          message: `names handler ${JSON.stringify(handler.slice(0, 200))}, which is not in "handlers"`,
        });
      });
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
  );

export type PluginManifest = z.output<typeof PluginManifestSchema>;
export type PluginManifestInput = z.input<typeof PluginManifestSchema>;
export type HandlerSpec = z.output<typeof HandlerSpecSchema>;
export type ChannelSpec = z.output<typeof ChannelSpecSchema>;
