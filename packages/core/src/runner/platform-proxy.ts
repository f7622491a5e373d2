/**
 * `ctx.platform` as a handler sees it: an object shaped like the host's services whose every
 * method call goes to one function (the permission gate in the host, or a message to it from a
 * runner elsewhere). Runner-side code: nothing here may import a schema (see runner.ts).
 */

/** The host's services object: `{ [service]: { [method](...args): Promise<unknown> } }`. */
export type Platform = Record<string, unknown>;

export type PlatformCall = (service: string, method: string, args: unknown[]) => Promise<unknown>;

/**
 * Names the language itself reads on an object (a `String()`, a template literal, `JSON.stringify`,
 * a `+`): answered here, never taken for a service or a method, whose call would start a
 * platform call the handler never made (its refusal unhandled: a crash).
 */
export const LANGUAGE_HOOK_NAMES = ['then', 'toJSON', 'valueOf', 'toString', 'toLocaleString'] as const;
const LANGUAGE_HOOKS = new Set<string>(LANGUAGE_HOOK_NAMES);

function languageHook(name: string, describe: string): (() => string) | undefined {
  return name === 'toString' || name === 'toLocaleString' ? () => describe : undefined;
}

/** A `platform.svc.method(...args)` shaped object over any call function (local or remote). */
export function createPlatformProxy(call: PlatformCall): Platform {
  const services = new Map<string, object>();
  return new Proxy(Object.create(null) as Platform, {
    get(_target, service) {
      if (typeof service !== 'string') return undefined;
      if (LANGUAGE_HOOKS.has(service)) return languageHook(service, '[ctx.platform]');
      let proxy = services.get(service);
      if (!proxy) {
        const methods = new Map<string, (...args: unknown[]) => Promise<unknown>>();
        proxy = new Proxy(Object.create(null) as object, {
          get(_t, method) {
            if (typeof method !== 'string') return undefined;
            if (LANGUAGE_HOOKS.has(method)) return languageHook(method, `[ctx.platform.${service}]`);
            let fn = methods.get(method);
            if (!fn) {
              fn = (...args: unknown[]) => {
                try {
                  return call(service, method, args);
                } catch (error) {
                  return Promise.reject(error);
                }
              };
              methods.set(method, fn);
            }
            return fn;
          },
          set: () => false,
          defineProperty: () => false,
        });
        services.set(service, proxy);
      }
      return proxy;
    },
    set: () => false,
    defineProperty: () => false,
  });
}
