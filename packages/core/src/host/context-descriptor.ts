import type { z } from 'zod';
import { issuesOf, validationError } from '../validation.js';
import { cloneForWire } from '../wire-clone.js';
import { lazySchema } from './lazy-zod.js';
import { nearest } from './nearest-name.js';
import { permissionSpecSchema } from './permissions.js';

/**
 * What the host tells the handler about the call: who, for which tenant, from which kind of
 * host (CLI argv, the WS connection, a REST request …), what it grants, and config.
 * Unknown keys are kept: a host may add its own JSON-serialisable fields.
 */
export const contextDescriptorSchema = lazySchema((z) =>
  z.looseObject({
    requestId: z.string().max(256).optional(),
    tenantId: z.string().max(256).optional(),
    /** `{ kind: 'cli' | 'rest' | 'ws' | 'workflow' | …, …host data }` */
    host: z.looseObject({ kind: z.string().min(1).max(64) }).optional(),
    /** What the host grants this execution; overrides the backend's `permissions` option. */
    permissions: permissionSpecSchema().optional(),
    config: z.record(z.string(), z.unknown()).optional(),
  }).superRefine((context, ctx) => {
    // `permissions: tenant.permissions` for a tenant with none would run under the backend's wider grant.
    if (Object.hasOwn(context, 'permissions') && context.permissions === undefined) {
      ctx.addIssue({ code: 'custom', path: ['permissions'], message: "is undefined: leave the key out for the backend's grant, or give {} to grant nothing" });
    }
    // A misspelt `permissions` would be kept as a field of the host's own, and the backend's wider grants apply.
    for (const key of Object.keys(context)) {
      if (key !== 'permissions' && nearest(key, ['permissions'])) {
        ctx.addIssue({ code: 'custom', path: [key], message: `unknown field; did you mean "permissions"? (a field of the host's own may not be named this close to it)` });
      }
    }
  }),
);

export type ContextDescriptor = z.output<ReturnType<typeof contextDescriptorSchema>>;

/**
 * Put back the own `__proto__` keys (as `JSON.parse` makes them) that the schema's parse leaves
 * out of the objects it rebuilds (the context, its `host` and `config`): the handler sees them as
 * it sees an input's, as data, never as a prototype.
 */
export function keepProtoKeys(given: unknown, parsed: ContextDescriptor | undefined): void {
  if (parsed === undefined) return;
  const pairs: Array<[unknown, object | undefined]> = [[given, parsed]];
  if (isObject(given)) pairs.push([given.host, parsed.host], [given.config, parsed.config]);
  for (const [from, to] of pairs) {
    if (isObject(from) && to !== undefined && Object.hasOwn(from, '__proto__') && !Object.hasOwn(to, '__proto__')) {
      Object.defineProperty(to, '__proto__', { value: from['__proto__'], enumerable: true, writable: true, configurable: true });
    }
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/**
 * Check a context descriptor a host gives once for many executions (a channel mount's static
 * context), where each execution would otherwise refuse it alike: the issues name `<what>.<field>`,
 * and a value that cannot cross to a runner is named as an input's would be.
 */
export function checkContextDescriptor(context: unknown, what: string): void {
  const result = contextDescriptorSchema().safeParse(context);
  if (!result.success) throw validationError(`Invalid ${what}`, issuesOf(result.error, what));
  cloneForWire(context, what);
}
