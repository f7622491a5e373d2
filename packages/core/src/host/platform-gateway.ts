import { InternalError, PermissionDeniedError, ValidationError } from '../errors.js';
import { allowsPlatformCall, mergePermissions, type PermissionSpec, type PermissionSubject } from './permissions.js';
import type { RegisteredPlugin } from './plugin-registry.js';
import { thrownText } from '../wire-value.js';

import type { Platform } from '../runner/platform-proxy.js';

export type { Platform } from '../runner/platform-proxy.js';

/**
 * Most arguments a service method is called with. Each is a slot on the host's stack while it is
 * called: in-process, where the handler's own spread is still on that stack, 60,000 overflowed it,
 * and the handler got a bare RangeError said to be the service's, where worker-pool called it.
 */
const MAX_PLATFORM_ARGUMENTS = 10_000;

/** Names that reach an object's machinery rather than a service method, whatever the service is. */
// `caller` and `arguments`: a function service's (reading them throws on most functions).
const RESERVED_KEYS = new Set(['constructor', '__proto__', 'prototype', '__defineGetter__', '__defineSetter__', '__lookupGetter__', '__lookupSetter__', 'caller', 'arguments']);

/**
 * Whether `fn` is an inherited built-in (`toString`, `hasOwnProperty`, `call`, `bind` …) rather than
 * a method the host wrote. A host service may still define its own `call` or `toString`.
 */
function isBuiltinMethod(fn: unknown, method: string): boolean {
  return (
    typeof fn === 'function' &&
    (fn === (Object.prototype as unknown as Record<string, unknown>)[method] ||
      fn === (Function.prototype as unknown as Record<string, unknown>)[method])
  );
}

/** A service of the host's platform: an object, or a function with methods of its own (a knex instance). */
function isService(target: unknown): boolean {
  return target !== null && (typeof target === 'object' || typeof target === 'function');
}

/**
 * The single gate every platform call passes through, whichever backend the handler runs on:
 * checks the handler's declared permissions (least privilege), refuses prototype tricks
 * (`constructor`, `__proto__` …), and calls the host's method with the service as `this`.
 */
export async function invokePlatform(
  platform: Platform | undefined,
  need: PermissionSpec,
  subject: PermissionSubject,
  service: string,
  method: string,
  args: unknown[],
): Promise<unknown> {
  if (typeof service !== 'string' || typeof method !== 'string' || RESERVED_KEYS.has(service) || service in Object.prototype || RESERVED_KEYS.has(method)) {
    throw new PermissionDeniedError(`platform.${String(service)}.${String(method)} is not a callable platform method`, {
      details: { ...subject, service: String(service), method: String(method), resource: `platform.${String(service)}.${String(method)}`, phase: 'platform' },
    });
  }
  if (!allowsPlatformCall(need, service, method)) {
    throw new PermissionDeniedError(
      `Handler "${subject.handlerId}" of plugin "${subject.pluginId}" may not call platform.${service}.${method}: not declared in its manifest permissions`,
      { details: { ...subject, service, method, resource: `platform.${service}.${method}`, phase: 'platform' } },
    );
  }
  const target = platform && Object.hasOwn(platform, service) ? platform[service] : undefined;
  const fn = isService(target) ? (target as Record<string, unknown>)[method] : undefined;
  if (isBuiltinMethod(fn, method)) {
    throw new PermissionDeniedError(`platform.${service}.${method} is not a callable platform method`, {
      details: { ...subject, service, method, resource: `platform.${service}.${method}`, phase: 'platform' },
    });
  }
  if (typeof fn !== 'function' && need.platform?.[service] === true && isService(target)) {
    // The service is there, declared whole: the method is the handler's own choice, and its mistake.
    throw new ValidationError(`platform.${service}.${method} is not a method of the host's ${service} service (called by handler "${subject.handlerId}" of plugin "${subject.pluginId}")`, {
      details: { ...subject, service, method, reason: 'no-such-method' },
    });
  }
  if (typeof fn !== 'function') {
    // The host's own setup (the handler declared this method, the host granted it): not the caller's fault.
    throw new InternalError(`The host's platform has no method ${service}.${method} (called by handler "${subject.handlerId}" of plugin "${subject.pluginId}")`, {
      details: { where: 'platform', what: `${service}.${method}` },
    });
  }
  if (!Array.isArray(args)) throw new ValidationError('platform call arguments must be an array');
  if (args.length > MAX_PLATFORM_ARGUMENTS) {
    throw new ValidationError(
      `platform.${service}.${method} was called with ${args.length} arguments; a service is passed at most ${MAX_PLATFORM_ARGUMENTS} (pass them as one array)`,
      { details: { ...subject, service, method, reason: 'too-many-arguments', limit: MAX_PLATFORM_ARGUMENTS } },
    );
  }
  return await (fn as (...a: unknown[]) => unknown).apply(target, args);
}

/**
 * For health(): the platform methods registered handlers declare and the backend's grant allows
 * but the host's `platform` does not have. Each call of one would fail (INTERNAL_ERROR); one the
 * grant does not allow keeps its handler from running at all (PERMISSION_DENIED), said then. A
 * backend given no `platform` is not looked at.
 */
export function unprovidedPlatformMethods(plugins: readonly RegisteredPlugin[], platform: Platform, grant: PermissionSpec): string[] {
  // A backend given no services at all may have them come with each execution (ExecuteOptions.platform).
  if (Object.keys(platform).length === 0) return [];
  const problems: string[] = [];
  for (const plugin of plugins) {
    const missing = new Set<string>();
    const unreadable = new Set<string>();
    for (const handler of Object.values(plugin.manifest.handlers)) {
      const declared = mergePermissions(plugin.manifest.permissions, handler.permissions).platform ?? {};
      for (const [service, methods] of Object.entries(declared)) {
        const target = Object.hasOwn(platform, service) ? platform[service] : undefined;
        const has = (method: string) => {
          try {
            return isService(target) && typeof (target as Record<string, unknown>)[method] === 'function';
          } catch (error) {
            // A getter of the host's that throws (a client not connected yet): there, but each call fails with what it throws.
            unreadable.add(`platform.${service}.${method} (${thrownText(error)})`);
            return true;
          }
        };
        if (methods === true) {
          if (grant.platform?.[service] === true && !isService(target)) missing.add(`platform.${service}`);
          continue;
        }
        for (const method of methods ?? []) if (allowsPlatformCall(grant, service, method) && !has(method)) missing.add(`platform.${service}.${method}`);
      }
    }
    if (missing.size > 0) problems.push(`plugin ${plugin.id} declares ${[...missing].join(', ')}, which the backend's permissions grant but its platform option does not have: each call fails (INTERNAL_ERROR) unless its execution brings it (ExecuteOptions.platform)`);
    if (unreadable.size > 0) problems.push(`plugin ${plugin.id} declares ${[...unreadable].join(', ')}, whose getter on the backend's platform option throws: each call fails with what it throws`);
  }
  return problems;
}
