import { PermissionDeniedError, ValidationError } from '../errors.js';
import { allowsPlatformCall, type PermissionSpec, type PermissionSubject } from './permissions.js';

import type { Platform } from '../runner/platform-proxy.js';

export type { Platform } from '../runner/platform-proxy.js';

/** Names that reach an object's machinery rather than a service method, whatever the service is. */
const RESERVED_KEYS = new Set(['constructor', '__proto__', 'prototype', '__defineGetter__', '__defineSetter__', '__lookupGetter__', '__lookupSetter__']);

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
      details: { ...subject, service: String(service), method: String(method), resource: `platform.${String(service)}.${String(method)}` },
    });
  }
  if (!allowsPlatformCall(need, service, method)) {
    throw new PermissionDeniedError(
      `Handler "${subject.handlerId}" of plugin "${subject.pluginId}" may not call platform.${service}.${method}: not declared in its manifest permissions`,
      { details: { ...subject, service, method, resource: `platform.${service}.${method}` } },
    );
  }
  const target = platform && Object.hasOwn(platform, service) ? platform[service] : undefined;
  const fn = target !== null && typeof target === 'object' ? (target as Record<string, unknown>)[method] : undefined;
  if (isBuiltinMethod(fn, method)) {
    throw new PermissionDeniedError(`platform.${service}.${method} is not a callable platform method`, {
      details: { ...subject, service, method, resource: `platform.${service}.${method}` },
    });
  }
  if (typeof fn !== 'function') {
    throw new ValidationError(`The host's platform has no method ${service}.${method}`, {
      details: { ...subject, service, method, resource: `platform.${service}.${method}` },
    });
  }
  if (!Array.isArray(args)) throw new ValidationError('platform call arguments must be an array');
  return await (fn as (...a: unknown[]) => unknown).apply(target, args);
}
